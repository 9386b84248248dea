"""The emulators the integration suite runs against, behind one small interface."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from pubsub_supervisor.emulator import free_port

if TYPE_CHECKING:
    from testcontainers.community.localstack import LocalStackContainer

#: Where the init hook looks for the package (its default PUBSUB_SOURCE).
HOOK_SOURCE = "/opt/pubsub-supervisor"
#: testcontainers settings for this kind of machine: no reaper image to pull, and clients
#: reach published ports on 127.0.0.1 (it would hand out the bridge gateway otherwise).
TESTCONTAINERS_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
}


class Emulator(Protocol):
    """What the fixtures need of an emulator: where it answers, and how to stop it."""

    @property
    def endpoint_url(self) -> str:
        """The gateway URL clients use (on 127.0.0.1)."""
        ...

    def stop(self) -> None:
        """Stop it and remove what it left."""
        ...


class ContainerLocalStack:
    """LocalStack in a container (testcontainers), with the project's init hooks copied in."""

    def __init__(
        self,
        *,
        image: str,
        root: Path,
        services: Sequence[str],
        env: Mapping[str, str],
        region: str = "us-east-1",
    ) -> None:
        self.image = image
        self.root = root
        self.services = tuple(services)
        self.env = dict(env)
        self.region = region
        self.port = free_port()
        self._container: LocalStackContainer | None = None

    @property
    def endpoint_url(self) -> str:
        """The published gateway, on 127.0.0.1 only."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        """Create the container, copy the hooks and the package in, wait for the hooks."""
        for key, value in TESTCONTAINERS_ENV.items():
            os.environ.setdefault(key, value)
        # Imported here: testcontainers reads the variables above when it is imported.
        from testcontainers.community.localstack import LocalStackContainer

        container = LocalStackContainer(image=self.image, region_name=self.region)
        container.with_services(*self.services)
        # Published on 127.0.0.1 only (the default is every interface). docker-py takes an
        # (address, port) pair here, which testcontainers' annotation does not spell out.
        cast(dict[str, Any], container.ports)["4566"] = ("127.0.0.1", self.port)
        container.with_env("LOCALSTACK_HOST", f"127.0.0.1:{self.port}")
        container.with_env("SQS_ENDPOINT_STRATEGY", "path")
        for key, value in self.env.items():
            container.with_env(key, value)
        for source, target, mode in self._files():
            container.with_copy_into_container(source, target, mode)
        self._container = container
        try:
            container.start(timeout=timeout)
            self._wait_hooks(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _files(self) -> list[tuple[Path, str, int]]:
        """Init hooks (executable, as LocalStack runs .sh hooks directly) and the package."""
        files: list[tuple[Path, str, int]] = []
        init = self.root / "localstack" / "init"
        for path in sorted(init.rglob("*")):
            if path.is_file():
                mode = 0o755 if path.suffix == ".sh" else 0o644
                files.append((path, f"/etc/localstack/init/{path.relative_to(init)}", mode))
        package = self.root / "pubsub_supervisor"
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                target = f"{HOOK_SOURCE}/{path.relative_to(self.root)}"
                files.append((path, target, 0o644))
        return files

    def _wait_hooks(self, deadline: float) -> None:
        """Wait until /_localstack/init/ready says completed, failing on a hook in ERROR."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        last: Any = None
        while time.monotonic() < deadline:
            try:
                with opener.open(f"{self.endpoint_url}/_localstack/init/ready", timeout=5) as r:
                    last = json.load(r)
            except (OSError, ValueError):
                last = None
            if isinstance(last, dict) and last.get("completed") is True:
                failed = [
                    s.get("name") for s in last.get("scripts", []) if s.get("state") == "ERROR"
                ]
                if failed:
                    raise RuntimeError(f"init hook(s) failed: {failed}\n{self.logs()}")
                return
            time.sleep(0.5)
        raise TimeoutError(f"LocalStack init hooks did not complete (last: {last})\n{self.logs()}")

    def logs(self, lines: int = 60) -> str:
        """The end of the container's output."""
        if self._container is None:
            return ""
        out, err = self._container.get_logs()
        text = (out + err).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Remove the container and its volumes."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()
