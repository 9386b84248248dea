"""docker-compose.yml: what it publishes, how it wires the app, and its emulator healthcheck."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pubsub_supervisor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
LOCALSTACK = COMPOSE["services"]["localstack"]
APP = COMPOSE["services"]["app"]


def test_ports_are_published_on_loopback_only() -> None:
    for service in COMPOSE["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    assert APP["ports"] == ["127.0.0.1:${APP_PORT:-3001}:3000"]


def test_emulator_runs_only_the_services_used_and_the_projects_hook() -> None:
    assert LOCALSTACK["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    assert LOCALSTACK["environment"]["SERVICES"] == "sns,sqs,ses,sts"
    assert LOCALSTACK["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert "./localstack/init:/etc/localstack/init:ro" in LOCALSTACK["volumes"]
    assert (
        "./pubsub_supervisor:/opt/pubsub-supervisor/pubsub_supervisor:ro" in LOCALSTACK["volumes"]
    )


def test_app_waits_for_the_emulator_and_talks_to_it_by_name() -> None:
    assert APP["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    env = APP["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    # Only the emulator's dummy credentials, whatever the user's environment holds.
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    # No env_file: compose v1 fails when it is missing; ${...} defaults cover a missing .env.
    assert "env_file" not in APP
    assert APP["build"]["args"] == {"BASE_IMAGE": "${BASE_IMAGE:-python:3.13-slim}"}
    assert APP["restart"] == "unless-stopped"
    assert "app-data:/data" in APP["volumes"]


def test_every_setting_reaches_the_app_or_is_fixed_by_the_container() -> None:
    # Fixed by the image (Dockerfile.supervisor's ENV) or by supervisord, per program.
    fixed = {"WEB_HOST", "WEB_PORT", "DATA_DIR", "PROGRAM_NAME"}
    dockerfile = (ROOT / "Dockerfile.supervisor").read_text()
    for name in fixed - {"PROGRAM_NAME"}:
        assert f"    {name}=" in dockerfile, name
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        name = str(choices[0] if choices else field).upper()
        if name in fixed:
            continue
        assert name in APP["environment"], f"{name} cannot be set for the app container"
        if name not in ("AWS_ENDPOINT_URL", "DATABASE_URL"):
            # Settable from .env or the shell, with the Settings default.
            assert APP["environment"][name].startswith(f"${{{name}:-"), name


def test_emulator_and_hook_settings_agree() -> None:
    # The hook names the resources the app looks up: both must see the same values.
    for name in ("RESOURCE_PREFIX", "MAX_RECEIVE_COUNT", "QUEUE_VISIBILITY_TIMEOUT"):
        assert LOCALSTACK["environment"][name] == APP["environment"][name], name


class InitState(BaseHTTPRequestHandler):
    """Serves /_localstack/init/ready with the body the test sets on the server."""

    def do_GET(self) -> None:
        body = json.dumps(self.server.body).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def init_state() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), InitState)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck(server: ThreadingHTTPServer, body: dict[str, Any]) -> int:
    """Run the emulator's healthcheck command against a server answering `body`."""
    server.body = body  # type: ignore[attr-defined]
    kind, python, flag, code = LOCALSTACK["healthcheck"]["test"]
    assert (kind, python, flag) == ("CMD", "python3", "-c")
    port = server.server_address[1]
    code = code.replace("http://localhost:4566", f"http://127.0.0.1:{port}")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    return result.returncode


@pytest.mark.parametrize(
    ("body", "healthy"),
    [
        (
            {"completed": True, "scripts": [{"name": "10-provision.sh", "state": "SUCCESSFUL"}]},
            True,
        ),
        ({"completed": False, "scripts": [{"name": "10-provision.sh", "state": "RUNNING"}]}, False),
        # A failed hook still ends in "completed": the emulator must not count as healthy.
        ({"completed": True, "scripts": [{"name": "10-provision.sh", "state": "ERROR"}]}, False),
    ],
)
def test_emulator_healthcheck(
    init_state: ThreadingHTTPServer, body: dict[str, Any], healthy: bool
) -> None:
    assert (healthcheck(init_state, body) == 0) is healthy
