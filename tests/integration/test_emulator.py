"""The native launcher against a real LocalStack: init hooks run, and stop leaves nothing behind."""

from __future__ import annotations

import json
import os
import textwrap
import urllib.request
from pathlib import Path

import pytest

from devtools.emulator import InitHookError, NativeLocalStack, free_port, port_is_free
from tests.integration.helpers import EMULATOR_VENV, processes_rooted_at, require_emulator_venv

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _require_emulator_venv() -> None:
    require_emulator_venv()


def write_hooks(init_dir: Path, markers: Path) -> None:
    """Put a .sh and a .py ready.d hook in init_dir, each writing a marker file."""
    ready = init_dir / "ready.d"
    ready.mkdir(parents=True)
    sh = ready / "10-marker.sh"
    sh.write_text(f'#!/bin/sh\nprintf "%s" "$RESOURCE_PREFIX" > "{markers}/sh.marker"\n')
    sh.chmod(0o755)
    # The .py hook runs inside LocalStack with its boto3; the queue URL shows the URL wiring.
    (ready / "20-marker.py").write_text(
        textwrap.dedent(
            f"""\
            import os
            import boto3

            url = boto3.client("sqs").create_queue(
                QueueName=os.environ["RESOURCE_PREFIX"] + "-probe"
            )["QueueUrl"]
            with open("{markers}/py.marker", "w") as fh:
                fh.write(url)
            """
        )
    )


def group_is_gone(pgid: int) -> bool:
    """Tell whether no process of the group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sh_and_py_ready_hooks_run_and_stop_leaves_nothing(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    write_hooks(tmp_path / "init", markers)
    port = free_port()
    ls = NativeLocalStack(
        port=port,
        state_dir=tmp_path / "state",
        init_dir=tmp_path / "init",
        venv=EMULATOR_VENV,
        extra_env={"RESOURCE_PREFIX": "itest"},
    )

    with ls:
        pgid = ls.pid
        assert pgid is not None
        assert pgid in processes_rooted_at(tmp_path / "state")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"{ls.endpoint_url}/_localstack/init/ready", timeout=5) as resp:
            status = json.load(resp)

    assert status["completed"] is True
    assert {s["name"]: s["state"] for s in status["scripts"]} == {
        "10-marker.sh": "SUCCESSFUL",
        "20-marker.py": "SUCCESSFUL",
    }
    assert (markers / "sh.marker").read_text() == "itest"
    assert (markers / "py.marker").read_text() == (
        f"http://127.0.0.1:{port}/queue/us-east-1/000000000000/itest-probe"
    )
    assert ls.startup_seconds is not None
    assert group_is_gone(pgid)
    assert processes_rooted_at(tmp_path / "state") == []
    assert not ls.is_running()
    assert port_is_free(port)
    ls.stop()  # idempotent


def test_failing_hook_is_named_and_the_emulator_stopped(tmp_path: Path) -> None:
    ready = tmp_path / "init" / "ready.d"
    ready.mkdir(parents=True)
    (ready / "10-broken.py").write_text("raise RuntimeError('topology is invalid')\n")
    port = free_port()
    ls = NativeLocalStack(
        port=port, state_dir=tmp_path / "state", init_dir=tmp_path / "init", venv=EMULATOR_VENV
    )

    with pytest.raises(InitHookError) as err:
        ls.start(timeout=120)

    assert "10-broken.py" in str(err.value)
    assert "topology is invalid" in str(err.value)  # from the log tail
    assert processes_rooted_at(tmp_path / "state") == []
    assert not ls.is_running()
    assert port_is_free(port)
