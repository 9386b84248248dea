"""The emulators the integration suite runs against, behind one interface.

`native` is LocalStack from .venv-localstack, provisioned by its own ready.d hook. `moto`
is moto's server mode from the app's virtualenv; it runs no init hooks, so the fixture
provisions it with `apply_topology`, exactly as `pubsub provision` does against AWS.
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
from typing import Any, Protocol

from pubsub_supervisor.aws import arns_for, make_clients
from pubsub_supervisor.emulator import NativeLocalStack, free_port
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import apply_topology

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("sns", "sqs", "ses", "sts")
#: Values of TEST_EMULATOR.
KINDS = ("native", "moto")
MOTO_SERVER = ROOT / ".venv" / "bin" / "moto_server"

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

    @property
    def endpoint_url(self) -> str: ...

    def sent_emails(self, to: str) -> list[SentEmail]: ...

    def stop(self) -> None: ...


def _get_json(url: str) -> Any:
    with _DIRECT.open(url, timeout=10) as response:
        return json.load(response)


class LocalStackEmulator:
    """Native LocalStack; its ready.d hook applies the topology."""

    kind = "native"
    dropped_attributes: frozenset[str] = frozenset()

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
        messages = _get_json(f"{self.endpoint_url}/_aws/ses")["messages"]
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

    def stop(self) -> None:
        """Stop LocalStack and everything it spawned."""
        self.localstack.stop()


class MotoEmulator:
    """moto's server mode on a free port, provisioned by `apply_topology`."""

    kind = "moto"
    dropped_attributes = frozenset({"RedriveAllowPolicy"})

    def __init__(self, state_dir: Path, prefix: str, timeout: float = 60) -> None:
        self.port = free_port()
        self.log_path = state_dir / "moto.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
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

    @property
    def endpoint_url(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                _get_json(f"{self.endpoint_url}/moto-api/data.json")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not answer within {timeout:.0f} s")

    def provision(self, prefix: str) -> None:
        """Apply the topology as `pubsub provision` does (moto runs no init hooks)."""
        settings = Settings.model_validate(
            {"aws_endpoint_url": self.endpoint_url, "resource_prefix": prefix}
        )
        clients = make_clients(settings)
        apply_topology(
            settings.topology,
            sns=clients.sns,
            sqs=clients.sqs,
            ses=clients.ses,
            arns=arns_for(clients, settings.aws_region),
        )

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


def start_emulator(kind: str, state_dir: Path, prefix: str) -> Emulator:
    """Start the emulator TEST_EMULATOR names, with the topology applied."""
    if kind == "native":
        return LocalStackEmulator(state_dir, prefix)
    if kind == "moto":
        return MotoEmulator(state_dir, prefix)
    raise ValueError(f"TEST_EMULATOR={kind!r} is not supported; use one of {', '.join(KINDS)}")
