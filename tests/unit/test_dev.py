"""How `make dev` resolves its settings and the environments it hands out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from devtools.dev import DevConfigError, DevPlan
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import HOOK_ENV

_READ = {name.upper() for name in Settings.model_fields} | set(HOOK_ENV) | {"ENV_FILE"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the variables DevPlan reads, so the developer's shell cannot leak in."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PUBSUB_")) or name in _READ:
            monkeypatch.delenv(name)


def plan(root: Path) -> DevPlan:
    """Resolve a plan for a checkout at root, from the current environment."""
    return DevPlan.resolve(root, root / "supervisord.conf", dict(os.environ))


def test_defaults_point_at_4566_with_dummy_credentials(tmp_path: Path) -> None:
    p = plan(tmp_path)

    assert p.port == 4566
    assert p.aws_env == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    assert p.run_dir == tmp_path / "var" / "run"
    assert p.log_dir == tmp_path / "var" / "log"


def test_port_comes_from_dotenv_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AWS_ENDPOINT_URL=http://127.0.0.1:4777\n")

    assert plan(tmp_path).port == 4777

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4888")
    assert plan(tmp_path).port == 4888


def test_env_file_variable_picks_another_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AWS_ENDPOINT_URL=http://127.0.0.1:4777\n")
    (tmp_path / "other.env").write_text("AWS_ENDPOINT_URL=http://127.0.0.1:4999\n")

    monkeypatch.setenv("ENV_FILE", "other.env")
    assert plan(tmp_path).port == 4999

    monkeypatch.setenv("ENV_FILE", "")
    assert plan(tmp_path).port == 4566


def test_blank_endpoint_means_the_default_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")

    assert plan(tmp_path).endpoint_url == "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    "url", ["https://sqs.us-east-1.amazonaws.com", "http://10.0.0.5:4566", "https://127.0.0.1:4566"]
)
def test_non_local_endpoint_is_refused_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)

    with pytest.raises(DevConfigError, match="Unset AWS_ENDPOINT_URL, or set it to http://127"):
        plan(tmp_path)


def test_invalid_settings_are_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESOURCE_PREFIX", "has spaces")

    with pytest.raises(DevConfigError, match="RESOURCE_PREFIX must be"):
        plan(tmp_path)


def test_supervisor_env_keeps_user_dirs_and_makes_them_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_LOG_DIR", "elsewhere/logs")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    p = plan(tmp_path)

    env = p.supervisor_env(dict(os.environ))

    assert env["PUBSUB_HOME"] == str(tmp_path)
    assert env["PUBSUB_LOG_DIR"] == str(tmp_path / "elsewhere" / "logs")
    assert env["PUBSUB_RUN_DIR"] == str(tmp_path / "var" / "run")
    assert env["PUBSUB_VENV"] == sys.prefix  # the tests run from the app venv
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["PATH"] == os.environ["PATH"]


def test_credentials_in_dotenv_reach_the_programs(tmp_path: Path) -> None:
    # boto3 never reads .env, so dev.py must export them.
    (tmp_path / ".env").write_text("AWS_ACCESS_KEY_ID=000000000001\n")

    env = plan(tmp_path).supervisor_env({})

    assert env["AWS_ACCESS_KEY_ID"] == "000000000001"
    assert env["AWS_SECRET_ACCESS_KEY"] == "test"


def test_emulator_env_carries_the_resolved_hook_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "RESOURCE_PREFIX=fromfile\nMAX_RECEIVE_COUNT=7\nAWS_ENDPOINT_URL=http://127.0.0.1:4999\n"
    )
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "3")
    p = plan(tmp_path)

    env = p.emulator_env()

    assert set(HOOK_ENV) <= set(env)
    assert env["RESOURCE_PREFIX"] == "fromfile"
    assert env["MAX_RECEIVE_COUNT"] == "3"
    assert env["QUEUE_VISIBILITY_TIMEOUT"] == "12"
    assert "AWS_ENDPOINT_URL" not in env  # the launcher sets it from the port
    assert p.port == 4999
    assert env["PUBSUB_SOURCE"] == str(tmp_path)
    assert env["AWS_ACCESS_KEY_ID"] == "test"


def test_missing_conf_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DevConfigError, match=r"supervisord\.conf not found"):
        plan(tmp_path).check()


def test_emulator_only_needs_no_supervisord_conf(tmp_path: Path) -> None:
    plan(tmp_path).check(supervisor=False)


def test_missing_supervisord_says_run_make_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "supervisord.conf").touch()
    monkeypatch.setenv("PUBSUB_VENV", str(tmp_path / "no-venv"))

    with pytest.raises(DevConfigError, match="run: make venv"):
        plan(tmp_path).check()
