"""Launcher checks and process handling, with stand-in interpreters instead of LocalStack."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.emulator import (
    EmulatorError,
    EmulatorNotInstalledError,
    NativeLocalStack,
    PortInUseError,
    StartupTimeoutError,
    free_port,
    port_from_url,
    port_is_free,
)


def make_venv(root: Path, python_script: str = "#!/bin/sh\nexit 0\n") -> Path:
    """Create a directory that passes for a LocalStack venv, with `python` as a shell script."""
    venv = root / "venv"
    main = venv / "lib" / "python3.13" / "site-packages" / "localstack" / "runtime" / "main.py"
    main.parent.mkdir(parents=True)
    main.touch()
    python = venv / "bin" / "python"
    python.parent.mkdir()
    python.write_text(textwrap.dedent(python_script))
    python.chmod(0o755)
    return venv


def make_init_dir(root: Path) -> Path:
    """Create an init hook directory with an empty ready.d."""
    init = root / "init"
    (init / "ready.d").mkdir(parents=True)
    return init


@pytest.fixture
def listener() -> Iterator[int]:
    """Hold a listening socket on 127.0.0.1 and yield its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def no_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the launcher tries to start a process."""

    def popen(*args: object, **kwargs: object) -> None:
        raise AssertionError("no process may be started")

    monkeypatch.setattr(subprocess, "Popen", popen)


def launcher(tmp_path: Path, venv: Path, port: int | None = None, **kw: object) -> NativeLocalStack:
    """Build a launcher on tmp_path with a free port unless one is given."""
    return NativeLocalStack(
        port=port or free_port(),
        state_dir=tmp_path / "state",
        init_dir=make_init_dir(tmp_path),
        venv=venv,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.usefixtures("no_spawn")
def test_port_in_use_says_what_to_do(tmp_path: Path, listener: int) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path), port=listener)

    with pytest.raises(PortInUseError) as err:
        ls.start(timeout=5)

    message = str(err.value)
    assert f"port {listener}" in message
    assert "already in use" in message
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:PORT" in message
    assert "--port" in message
    assert not ls.is_running()


@pytest.mark.usefixtures("no_spawn")
def test_missing_venv_says_run_make_emulator_venv(tmp_path: Path) -> None:
    ls = launcher(tmp_path, tmp_path / "absent-venv")

    with pytest.raises(EmulatorNotInstalledError, match="run: make emulator-venv"):
        ls.start(timeout=5)


@pytest.mark.usefixtures("no_spawn")
def test_venv_without_localstack_is_reported_as_missing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    ls = launcher(tmp_path, venv)

    with pytest.raises(EmulatorNotInstalledError, match="run: make emulator-venv"):
        ls.start(timeout=5)


@pytest.mark.usefixtures("no_spawn")
def test_non_executable_shell_hook_is_rejected_before_start(tmp_path: Path) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path))
    hook = ls.init_dir / "ready.d" / "10-create.sh"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o644)

    with pytest.raises(EmulatorError, match=f"chmod \\+x {hook}"):
        ls.start(timeout=5)


@pytest.mark.usefixtures("no_spawn")
def test_missing_init_dir_is_rejected(tmp_path: Path) -> None:
    ls = NativeLocalStack(
        port=free_port(),
        state_dir=tmp_path / "state",
        init_dir=tmp_path / "nowhere",
        venv=make_venv(tmp_path),
    )

    with pytest.raises(EmulatorError, match="does not exist"):
        ls.start(timeout=5)


def test_extra_env_cannot_override_launcher_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="GATEWAY_LISTEN"):
        NativeLocalStack(
            state_dir=tmp_path,
            init_dir=tmp_path,
            venv=tmp_path,
            extra_env={"GATEWAY_LISTEN": "0.0.0.0:4566"},
        )


def test_child_env_is_clean_and_wired_to_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_venv = tmp_path / "app-venv"
    monkeypatch.setenv("VIRTUAL_ENV", str(app_venv))
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("PATH", os.pathsep.join([str(app_venv / "bin"), "/usr/bin"]))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")
    monkeypatch.setenv("DISABLE_EVENTS", "0")  # a user's choice wins over our default
    monkeypatch.setenv("SQS_ENDPOINT_STRATEGY", "domain")  # but not over the URL wiring
    venv = make_venv(tmp_path)
    ls = launcher(tmp_path, venv, port=45123, extra_env={"RESOURCE_PREFIX": "t1"})

    env = ls.child_env()

    assert "VIRTUAL_ENV" not in env
    assert "PYTHONPATH" not in env
    assert "AWS_ENDPOINT_URL_SQS" not in env
    assert env["PATH"].split(os.pathsep) == [str(venv / "bin"), "/usr/bin"]
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:45123"
    assert env["LOCALSTACK_HOST"] == "127.0.0.1:45123"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:45123"
    assert env["SERVICES"] == "sns,sqs,ses"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path / "state")
    assert env["OVERRIDE_IN_DOCKER"] == "0"
    assert env["SQS_ENDPOINT_STRATEGY"] == "path"
    assert env["DISABLE_EVENTS"] == "0"
    assert env["RESOURCE_PREFIX"] == "t1"


def test_init_dir_link_is_created_and_repointed(tmp_path: Path) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path))
    link = tmp_path / "state" / "etc" / "localstack" / "init"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "stale")

    ls._link_init_dir()

    assert link.is_symlink()
    assert link.readlink() == ls.init_dir


def test_real_init_dir_in_state_is_not_clobbered(tmp_path: Path) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path))
    (tmp_path / "state" / "etc" / "localstack" / "init").mkdir(parents=True)

    with pytest.raises(EmulatorError, match="is a real directory"):
        ls._link_init_dir()


def test_early_exit_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    venv = make_venv(tmp_path, "#!/bin/sh\necho 'cannot import localstack plugins' >&2\nexit 7\n")
    ls = launcher(tmp_path, venv)

    with pytest.raises(EmulatorError) as err:
        ls.start(timeout=10)

    assert "exited with code 7" in str(err.value)
    assert "cannot import localstack plugins" in str(err.value)


def test_timeout_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    # Like LocalStack after a failed bind: alive, never ready, deaf to SIGTERM.
    script = """\
        #!/bin/sh
        trap '' TERM INT
        echo 'CannotListenError: Address already in use'
        while :; do sleep 0.1; done
    """
    ls = launcher(tmp_path, make_venv(tmp_path, script), stop_grace=0.5)
    pids: list[int] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        pids.append(proc.pid)
        return proc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", recording_popen)
        with pytest.raises(StartupTimeoutError) as err:
            ls.start(timeout=1)

    assert "CannotListenError" in str(err.value)
    assert len(pids) == 1
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)
    assert not ls.is_running()


def test_stop_is_idempotent(tmp_path: Path) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path))

    ls.stop()
    ls.stop()

    assert not ls.is_running()


def test_free_port_is_bindable() -> None:
    assert port_is_free(free_port())


def test_port_is_free_sees_a_listener(listener: int) -> None:
    assert not port_is_free(listener)


@pytest.mark.parametrize(
    ("url", "port"),
    [
        (None, 4566),
        ("", 4566),
        ("http://127.0.0.1:4600", 4600),
        ("http://localhost", 4566),
    ],
)
def test_port_from_url(url: str | None, port: int) -> None:
    assert port_from_url(url) == port


def test_endpoint_url_names_loopback(tmp_path: Path) -> None:
    ls = launcher(tmp_path, make_venv(tmp_path), port=45999)

    assert ls.endpoint_url == "http://127.0.0.1:45999"
