"""The emulators the integration suite runs against, behind one interface.

`native` is LocalStack from .venv-localstack, provisioned by its own ready.d hook;
`testcontainers` is LocalStack in a container (LOCALSTACK_IMAGE), with the same hook copied
in. `moto` is moto's server mode from the app's virtualenv, `ministack` MiniStack from
.venv-ministack. Those two run no init hooks from the project, so the fixture provisions
them with `provision`, exactly as `pubsub provision` does against AWS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from devtools.emulator import NativeLocalStack, free_port
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings
from tests.support.docker import LOCALSTACK_IMAGES, local_image

if TYPE_CHECKING:
    from testcontainers.community.localstack import LocalStackContainer

ROOT = Path(__file__).resolve().parents[2]
#: CloudFormation: tests/integration/test_cloudformation.py deploys the generated stack.
SERVICES = ("sns", "sqs", "ses", "sts", "cloudformation")
#: Values of TEST_EMULATOR.
KINDS = ("native", "testcontainers", "moto", "ministack")
MOTO_SERVER = ROOT / ".venv" / "bin" / "moto_server"
MINISTACK = ROOT / ".venv-ministack" / "bin" / "ministack"

# Requests to the emulator must never go through a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class SentEmail:
    """One message the emulator's SES accepted."""

    to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None

    @property
    def content(self) -> str:
        """Text and HTML parts together (some emulators keep only one)."""
        return "\n".join(part for part in (self.text, self.html) if part)


class Emulator(Protocol):
    """What the fixtures and tests need from any emulator."""

    kind: str
    #: Queue attributes it accepts but does not keep (re-provisioning shows them as drift).
    dropped_attributes: frozenset[str]
    #: Kinds of resource it cannot create (provisioning warns; a dry run lists them again).
    unsupported: frozenset[str]

    @property
    def endpoint_url(self) -> str: ...

    def sent_emails(self, to: str) -> list[SentEmail]: ...

    def stop(self) -> None: ...


def _get_json(url: str) -> Any:
    with _DIRECT.open(url, timeout=10) as response:
        return json.load(response)


def _localstack_sent_emails(endpoint_url: str, to: str) -> list[SentEmail]:
    """Messages LocalStack's SES accepted for one recipient (its inspection endpoint)."""
    messages = _get_json(f"{endpoint_url}/_aws/ses")["messages"]
    return [
        SentEmail(
            to=tuple(m["Destination"]["ToAddresses"]),
            subject=m["Subject"],
            text=m["Body"].get("text_part"),
            html=m["Body"].get("html_part"),
        )
        for m in messages
        if to in m["Destination"]["ToAddresses"]
    ]


class LocalStackEmulator:
    """Native LocalStack; its ready.d hook applies the topology."""

    kind = "native"
    dropped_attributes: frozenset[str] = frozenset()
    unsupported: frozenset[str] = frozenset()

    def __init__(self, state_dir: Path, prefix: str) -> None:
        self.localstack = NativeLocalStack(
            port=free_port(),
            state_dir=state_dir,
            init_dir=ROOT / "localstack" / "init",
            venv=ROOT / ".venv-localstack",
            services=SERVICES,
            extra_env={"PUBSUB_SOURCE": str(ROOT), "RESOURCE_PREFIX": prefix},
        )
        self.localstack.start()

    @property
    def endpoint_url(self) -> str:
        """The gateway URL."""
        return self.localstack.endpoint_url

    def sent_emails(self, to: str) -> list[SentEmail]:
        """Messages from LocalStack's SES inspection endpoint."""
        return _localstack_sent_emails(self.endpoint_url, to)

    def stop(self) -> None:
        """Stop LocalStack and everything it spawned."""
        self.localstack.stop()


#: Where the init hook looks for the package (its default PUBSUB_SOURCE).
HOOK_SOURCE = "/opt/pubsub-supervisor"
#: testcontainers settings for this kind of machine: no reaper image to pull, and clients
#: reach published ports on 127.0.0.1 (it would hand out the bridge gateway otherwise).
TESTCONTAINERS_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
}


class ContainerLocalStack:
    """LocalStack in a container (testcontainers), with the project's init hooks copied in."""

    kind = "testcontainers"
    dropped_attributes: frozenset[str] = frozenset()
    unsupported: frozenset[str] = frozenset()

    def __init__(self, image: str, prefix: str, region: str = "us-east-1") -> None:
        self.image = image
        self.env = {"RESOURCE_PREFIX": prefix}
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
        container.with_services(*SERVICES)
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

    @staticmethod
    def _files() -> list[tuple[Path, str, int]]:
        """Init hooks (executable, as LocalStack runs .sh hooks directly) and the package."""
        files: list[tuple[Path, str, int]] = []
        init = ROOT / "localstack" / "init"
        for path in sorted(init.rglob("*")):
            if path.is_file():
                mode = 0o755 if path.suffix == ".sh" else 0o644
                files.append((path, f"/etc/localstack/init/{path.relative_to(init)}", mode))
        for path in sorted((ROOT / "pubsub_supervisor").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append((path, f"{HOOK_SOURCE}/{path.relative_to(ROOT)}", 0o644))
        return files

    def _wait_hooks(self, deadline: float) -> None:
        """Wait until /_localstack/init/ready says completed, failing on a hook in ERROR."""
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = _get_json(f"{self.endpoint_url}/_localstack/init/ready")
            except (OSError, ValueError):
                last = None
            if isinstance(last, dict) and last.get("completed") is True:
                scripts = last.get("scripts", [])
                failed = [s.get("name") for s in scripts if s.get("state") == "ERROR"]
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

    def sent_emails(self, to: str) -> list[SentEmail]:
        """Messages from LocalStack's SES inspection endpoint."""
        return _localstack_sent_emails(self.endpoint_url, to)

    def stop(self) -> None:
        """Remove the container and its volumes."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()


class ServerEmulator:
    """An emulator server started natively on a free port, provisioned by `provision`."""

    kind = ""
    dropped_attributes: frozenset[str] = frozenset()
    unsupported: frozenset[str] = frozenset()
    #: A URL that answers once the server is up.
    ready_path = "/"

    def __init__(self, state_dir: Path, prefix: str, timeout: float = 60) -> None:
        self.port = free_port()
        self.log_path = state_dir / f"{self.kind}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.environment(state_dir),
                cwd=state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_listening(timeout)
            self.provision(prefix)
        except BaseException:
            self.stop()
            raise

    def command(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def environment(self, state_dir: Path) -> dict[str, str]:
        """The server's environment."""
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}

    @property
    def endpoint_url(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                _get_json(f"{self.endpoint_url}{self.ready_path}")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not answer within {timeout:.0f} s")

    def provision(self, prefix: str) -> None:
        """Apply the topology as `pubsub provision` does (these run no init hooks)."""
        settings = Settings.model_validate(
            {"aws_endpoint_url": self.endpoint_url, "resource_prefix": prefix}
        )
        provision(settings)

    def sent_emails(self, to: str) -> list[SentEmail]:
        """Messages the emulator's SES accepted for one recipient."""
        raise NotImplementedError

    def stop(self, grace: float = 10) -> None:
        """SIGTERM the server's process group; SIGKILL after `grace` seconds."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class MotoEmulator(ServerEmulator):
    """moto's server mode from the app's virtualenv."""

    kind = "moto"
    dropped_attributes = frozenset({"RedriveAllowPolicy"})
    ready_path = "/moto-api/data.json"

    def command(self) -> list[str]:
        """`moto_server` on 127.0.0.1 only."""
        return [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)]

    def sent_emails(self, to: str) -> list[SentEmail]:
        """Messages from moto's model dump (it keeps the HTML part when there is one)."""
        messages = _get_json(f"{self.endpoint_url}/moto-api/data.json")["ses"]["Message"]
        return [
            SentEmail(
                to=tuple(m["destinations"]["ToAddresses"]),
                subject=m["subject"],
                text=None,
                html=m["body"],
            )
            for m in messages
            if to in m["destinations"].get("ToAddresses", [])
        ]


class MiniStackEmulator(ServerEmulator):
    """MiniStack from .venv-ministack (its own pinned lock: it needs an older botocore)."""

    kind = "ministack"
    ready_path = "/_ministack/health"
    unsupported = frozenset({"event destination"})

    def command(self) -> list[str]:
        """The `ministack` server in the foreground."""
        if not MINISTACK.exists():
            raise RuntimeError(f"{MINISTACK} is missing: run: make ministack-venv")
        return [str(MINISTACK)]

    def environment(self, state_dir: Path) -> dict[str, str]:
        """Port, address and services through its environment; no persistence, no Docker."""
        return {
            **super().environment(state_dir),
            "GATEWAY_PORT": str(self.port),
            "BIND_HOST": "127.0.0.1",
            "MINISTACK_HOST": "127.0.0.1",
            "SERVICES": ",".join(SERVICES),
            "LOG_LEVEL": "WARNING",
        }

    def sent_emails(self, to: str) -> list[SentEmail]:
        """Messages from MiniStack's SES inspection endpoint (grouped by account)."""
        by_account = _get_json(f"{self.endpoint_url}/_ministack/ses/messages")["messages"]
        return [
            SentEmail(
                to=tuple(m.get("To", [])),
                subject=m.get("Subject", ""),
                text=m.get("BodyText") or None,
                html=m.get("BodyHtml") or None,
            )
            for messages in by_account.values()
            for m in messages
            if to in m.get("To", [])
        ]


def start_emulator(kind: str, state_dir: Path, prefix: str) -> Emulator:
    """Start the emulator TEST_EMULATOR names, with the topology applied."""
    if kind == "native":
        return LocalStackEmulator(state_dir, prefix)
    if kind == "testcontainers":
        container = ContainerLocalStack(local_image("LOCALSTACK_IMAGE", LOCALSTACK_IMAGES), prefix)
        container.start()
        return container
    if kind == "moto":
        return MotoEmulator(state_dir, prefix)
    if kind == "ministack":
        return MiniStackEmulator(state_dir, prefix)
    raise ValueError(f"TEST_EMULATOR={kind!r} is not supported; use one of {', '.join(KINDS)}")
