"""The project's whole stack for the benchmark: its topology applied to the benchmark's
emulator, then supervisord running every program (the same tree `make dev` runs)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Engine

from devtools.emulator import free_port
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings
from tests.support.fixtures import CALL_RECORDER
from tests.support.stack import SupervisedStack

#: The one product the load generator orders; stock enough that inventory never rejects.
SKU = "BENCH-1"
#: How long supervisord may take to start every program on a loaded machine.
START_TIMEOUT_S = 240.0

Say = Callable[[str], None]


@dataclass
class BenchStack:
    """A running stack and what the benchmark reads from it."""

    supervised: SupervisedStack
    settings: Settings
    #: The web's own store, opened read-only-in-practice by the harness: its timestamps
    #: are the ones the API shows (created_at, services.<name>.updated_at).
    engine: Engine
    #: Every AWS call the stack's programs make, one JSON line each (see `bench.e2e.calls`).
    call_log: Path

    @property
    def base_url(self) -> str:
        """The web's address (always 127.0.0.1)."""
        return self.supervised.base_url


def settings_for(endpoint_url: str, prefix: str, data_dir: Path, catalog: Path) -> Settings:
    """The settings every program of the benchmark's stack reads (no .env file)."""
    # _env_file=None: the programs get ENV_FILE="" too, so both sides see the defaults
    # (and the same environment variables).
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        aws_endpoint_url=endpoint_url,
        resource_prefix=prefix,
        data_dir=data_dir,
        catalog_path=catalog,
    )


def write_catalog(path: Path) -> Path:
    """A catalog of one product with practically unlimited stock."""
    product = {"sku": SKU, "name": "Benchmark widget", "price_cents": 1000, "stock": 10**9}
    path.write_text(json.dumps([product]))
    return path


@contextlib.contextmanager
def running_stack(endpoint_url: str, state_dir: Path, say: Say) -> Iterator[BenchStack]:
    """Provision a fresh prefix on the emulator and run supervisord until the block ends."""
    if urlsplit(endpoint_url).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError("the benchmark's stack talks to an emulator on 127.0.0.1 only")
    # A prefix of its own, so a re-used emulator starts with empty queues.
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    data_dir = state_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(state_dir / "catalog.json")
    settings = settings_for(endpoint_url, prefix, data_dir, catalog)
    # boto3 reads keys from the environment only; the emulator accepts any.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "test")
    provision(settings, progress=lambda _line: None)
    call_log = state_dir / "aws-calls.jsonl"
    env = {
        # Every program records each botocore call it makes, the same way.
        "PYTHONPATH": str(CALL_RECORDER),
        "PUBSUB_TEST_AWS_CALL_LOG": str(call_log),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": settings.aws_region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RESOURCE_PREFIX": prefix,
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(data_dir),
        "CATALOG_PATH": str(catalog),
        # The load comes from 127.0.0.1 with a few addresses: no intake limits.
        "ORDER_RATE_LIMIT": "",
        "MAX_ORDERS_PER_EMAIL_PER_HOUR": "0",
    }
    supervised = SupervisedStack(state_dir / "stack", env)
    say(f"starting supervisord (every program) on {supervised.base_url} ...")
    supervised.start(timeout=START_TIMEOUT_S)
    engine = make_engine(settings.database_url("web"))
    try:
        yield BenchStack(supervised, settings, engine, call_log)
    finally:
        engine.dispose()
        supervised.stop()
