"""docker-compose.yml (and any override of it) brought up as a project of its own, driven
through the compose CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.docker import compose_command, run_docker

#: Compose variables that must come from the test, never from the runner's environment.
_OWN_VARIABLES = (
    "LOCALSTACK_IMAGE",
    "BASE_IMAGE",
    "APP_IMAGE",
    "APP_PORT",
    "LOCALSTACK_PORT",
    "LOCALSTACK_AUTH_TOKEN",
    "AWS_REGION",
    "RESOURCE_PREFIX",
    "MAX_RECEIVE_COUNT",
    "QUEUE_VISIBILITY_TIMEOUT",
    "EMAIL_SENDER",
    "WEB_WORKERS",
    "WEB_THREADS",
    "OUTBOX_POLL_INTERVAL",
    "OUTBOX_REPUBLISH_AFTER",
    "CONSUMER_CONCURRENCY",
    "CONSUMER_POLLERS",
    "CONSUMER_WAIT_SECONDS",
    "CATALOG_PATH",
    "LOG_LEVEL",
    # The scale-out override's own (pubsub compose-scale).
    "POSTGRES_IMAGE",
    "SCALE_WEB_PORT",
    "SCALE_AWS_ENDPOINT_URL",
    "EMAIL_CONFIRM_SECONDS",
    "OUTBOX_CLAIM_SECONDS",
    "ORDER_RATE_LIMIT",
    "MAX_ORDERS_PER_EMAIL_PER_HOUR",
)


class ComposeStack:
    """One compose project (its own containers, network and volume) of docker-compose.yml,
    with the `overrides` files layered on it in order."""

    def __init__(
        self,
        root: Path,
        project: str,
        variables: Mapping[str, str],
        env_file: Path,
        files: Sequence[str] = ("docker-compose.yml",),
        overrides: Sequence[Path] = (),
    ) -> None:
        self.root = root
        self.project = project
        self.files = [root / name for name in files] + list(overrides)
        # Compose reads variables from this file instead of a `.env` in the checkout.
        self.env_file = env_file
        env_file.touch()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in _OWN_VARIABLES},
            **variables,
        }

    def compose(
        self,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a compose command in this project (a `.env` in the checkout is not read)."""
        command = self.command(*args)
        result = subprocess.run(
            command,
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command[len(compose_command()) :])} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def command(self, *args: str) -> list[str]:
        """The compose command line for `args` in this project."""
        files = [arg for path in self.files for arg in ("--file", str(path))]
        return [
            *compose_command(),
            "--project-name",
            self.project,
            *files,
            # The tests set every variable they rely on; a developer's .env stays out.
            "--env-file",
            str(self.env_file),
            *args,
        ]

    def container_ids(self, service: str) -> list[str]:
        """The ids of the service's containers (several when it is scaled), stopped ones too."""
        # --all: Compose v2 lists only running containers without it (v1 lists them all).
        return self.compose("ps", "--all", "-q", service).stdout.split()

    def container_id(self, service: str) -> str:
        """The id of the service's (only) container."""
        ids = self.container_ids(service)
        assert len(ids) == 1, f"expected one {service} container, got {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        """`docker inspect` of the service's container."""
        result = run_docker("inspect", self.container_id(service))
        assert result.returncode == 0, result.stderr
        info: dict[str, Any] = json.loads(result.stdout)[0]
        return info

    def health(self, service: str) -> str:
        """healthy, unhealthy, starting, or the container's state when it is not running."""
        state = self.inspect(service)["State"]
        if state["Status"] != "running":
            return str(state["Status"])
        return str(state.get("Health", {}).get("Status", "none"))

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        """Wait for the service's healthcheck to pass; fail with its last outputs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health(service) == "healthy":
                return
            time.sleep(1)
        probes = self.inspect(service)["State"].get("Health", {}).get("Log", [])[-3:]
        raise AssertionError(
            f"{service} not healthy after {timeout:.0f} s; last probes: "
            f"{[p.get('Output', '').strip() for p in probes]}\n{self.logs(service)}"
        )

    def exec(self, service: str, *command: str, check: bool = True) -> str:
        """Run a command in the service's container as its user; return its output."""
        result = self.compose("exec", "-T", service, *command, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"exec {' '.join(command)} failed ({result.returncode}): "
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result.stdout

    def logs(self, service: str, tail: int = 80) -> str:
        """The end of a service's console output, without colours."""
        result = self.compose("logs", "--no-color", "--tail", str(tail), service, check=False)
        return result.stdout

    def programs(self) -> dict[str, tuple[str, int | None]]:
        """`supervisorctl status` in the app container: program -> (state, pid)."""
        # supervisorctl exits 3 when a program is not RUNNING; the states say which.
        output = self.exec("app", "supervisorctl", "status", check=False)
        states: dict[str, tuple[str, int | None]] = {}
        for line in output.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                states[parts[0]] = (parts[1], pid)
        return states

    def down(self) -> None:
        """Remove the containers, the network and the data volume."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
