"""`pubsub compose-scale`: the scale-out override follows the registry and supervisord.conf."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pubsub_ops import cli, compose_scale
from pubsub_supervisor.registry import SERVICES, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
#: Containers of the override that run no supervisord program.
NOT_PROGRAMS = {"app", "postgres"}


def conf_commands() -> dict[str, str]:
    """supervisord program -> its command, without the virtualenv's path."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(" ;",))
    parser.read(ROOT / "supervisord.conf")
    return {
        s.removeprefix("program:"): parser[s]["command"]
        .replace("%(ENV_PUBSUB_VENV)s/bin/", "")
        .replace('"', "")
        for s in parser.sections()
        if s.startswith("program:")
    }


def load(text: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_one_container_per_supervisord_program_with_its_command() -> None:
    services = load(compose_scale.render())["services"]
    programs = {
        body["environment"]["PROGRAM_NAME"]: " ".join(body["command"])
        for name, body in services.items()
        if name not in NOT_PROGRAMS
    }
    assert programs == conf_commands()


def test_every_program_container_is_the_app_image_on_postgres() -> None:
    document = load(compose_scale.render())
    assert set(document["services"]["app"]) == {"profiles"}
    for name, body in document["services"].items():
        if name in NOT_PROGRAMS:
            continue
        assert body["image"].startswith("${APP_IMAGE:-"), name
        assert body["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert body["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "localstack": {"condition": "service_healthy"},
        }, name
    assert "pgdata" in document["volumes"]


def test_every_program_takes_the_settings_the_all_in_one_app_takes() -> None:
    # One .env configures either layout, and the emulator's hook and the programs agree on
    # the topology (visibility timeout, receive count, sender).
    app = load((ROOT / "docker-compose.yml").read_text())["services"]["app"]["environment"]
    services = load(compose_scale.render())["services"]
    own = {"DATABASE_URL", "AWS_ENDPOINT_URL", "CONSUMER_CONCURRENCY", "WEB_SECRET_KEY"}
    for name, body in services.items():
        if name in NOT_PROGRAMS:
            continue
        env = body["environment"]
        for variable, value in app.items():
            if variable not in own and str(value).startswith(f"${{{variable}:-"):
                assert env.get(variable) == value, (name, variable)


def test_the_database_image_is_the_local_one_unless_chosen() -> None:
    postgres = load(compose_scale.render())["services"]["postgres"]
    assert postgres["image"] == "${POSTGRES_IMAGE:-pubsub-supervisor/postgres:trixie}"
    assert "POSTGRES_PASSWORD" in postgres["environment"]


def test_a_registered_service_gets_its_container() -> None:
    shipping = ServiceSpec(name="shipping", handler="services.shipping.handler:build")
    services = load(compose_scale.render((*SERVICES[:3], shipping)))["services"]
    assert services["shipping"]["command"] == ["python", "-m", "services", "shipping"]
    assert services["shipping"]["environment"]["PROGRAM_NAME"] == "shipping_service"
    assert services["shipping"]["environment"]["AWS_REGION"] == "${AWS_REGION:-us-east-1}"


def test_the_command_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "var" / "docker-compose.scale.yml"
    assert cli.main(["compose-scale", "-o", str(target)]) == 0
    assert target.read_text() == compose_scale.render()
    assert cli.main(["compose-scale"]) == 0
    assert capsys.readouterr().out.endswith(compose_scale.render())


def test_compose_accepts_it_with_the_base_file(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed: `apt-get install docker-compose` checks this")
    override = tmp_path / "docker-compose.scale.yml"
    override.write_text(compose_scale.render())
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "-f", str(override), "config", "-q"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
