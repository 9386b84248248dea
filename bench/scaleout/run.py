"""Scale-out benchmark: order throughput on PostgreSQL with 1, 2, ... instances per service.

For each instance count N it builds a fresh setup (its own database and queues), starts
the web and N instances of each service, takes a backlog of orders into the outbox with
the relay stopped, then starts the relay (web_worker) and times, from the first event
published, until all three services have processed every order and until the web has
recorded every result. Times come from the stores' own timestamps, so program start-up
and the clients' posting are not counted.

Usage: python -m bench.scaleout [--orders N] [--instances 1,2,4] [--concurrency C]
       [--endpoint http://127.0.0.1:PORT] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import requests
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from bench.core.results import markdown
from devtools.emulator import NativeLocalStack, free_port
from devtools.postgres import throwaway
from pubsub_supervisor import db
from pubsub_supervisor.idempotency import processed_events
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import SERVICE_NAMES, STORE_NAMES, Settings
from services.email.sends import SENT, email_sends
from web.schema import order_services, outbox

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
#: Orders spread over the SKUs with plenty of stock, so that every order is reservable.
ITEMS = [
    [{"sku": "CB-005", "quantity": 1}],
    [{"sku": "MS-002", "quantity": 1}, {"sku": "CB-005", "quantity": 2}],
    [{"sku": "KB-001", "quantity": 1}],
]


@dataclass(frozen=True)
class Result:
    """One instance count's figures."""

    instances: int
    orders: int
    #: From the first event published until all three services processed every order.
    services_seconds: float
    #: From the first event published until the web had recorded every service's result.
    settled_seconds: float

    @property
    def services_rate(self) -> float:
        """Orders per second through all three services."""
        return self.orders / self.services_seconds

    @property
    def settled_rate(self) -> float:
        """Orders per second until the web shows them processed."""
        return self.orders / self.settled_seconds


def say(line: str) -> None:
    """Progress, as it happens."""
    print(line, flush=True)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `check()`; returns when it first held (monotonic time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s")


class Programs:
    """The stack's programs as plain processes (one per instance), as compose runs them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "ENV_FILE": "", "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, *command: str) -> None:
        """Start one program instance."""
        log = (self.log_dir / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            command,
            env={**self.env, "PROGRAM_NAME": name},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((proc, log))

    def logged(self, phrase: str) -> int:
        """How many program logs contain `phrase`."""
        return sum(
            phrase in path.read_text(errors="replace") for path in self.log_dir.glob("*.log")
        )

    def service(self, name: str) -> None:
        """Start one instance of an order service."""
        self.start(f"{name}_service", str(VENV / "bin" / "python"), "-m", f"services.{name}")

    def stop(self) -> None:
        """SIGTERM every program (they drain), SIGKILL what is left after a grace period."""
        for proc, _log in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc, log in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        self.procs.clear()


@contextlib.contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """An empty database on the server, dropped afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def post_orders(base_url: str, count: int) -> None:
    """POST `count` orders from a few client threads."""
    session = requests.Session()

    def post(i: int) -> None:
        response = session.post(
            f"{base_url}/api/orders",
            json={"customer_email": f"bench-{i}@example.com", "items": ITEMS[i % len(ITEMS)]},
            timeout=30,
        )
        response.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(count)))


def count(engine: Engine, query: Any) -> int:
    """One number from a store."""
    with db.read(engine) as conn:
        return int(conn.execute(query).scalar_one())


def scalar(engine: Engine, query: Any) -> datetime:
    """One timestamp from a store."""
    with db.read(engine) as conn:
        value: datetime = conn.execute(query).scalar_one()
    return value


def run_one(
    instances: int, orders: int, endpoint: str, server_url: str, concurrency: int, work: Path
) -> Result:
    """Backlog `orders`, then drain it with `instances` instances of each service."""
    prefix = f"bench-{instances}-{uuid.uuid4().hex[:6]}"
    with fresh_database(server_url, prefix.replace("-", "_")) as url:
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "RESOURCE_PREFIX": prefix,
            "DATABASE_URL": url,
            "WEB_PORT": str(free_port()),
            "WEB_WORKERS": "2",
            "CONSUMER_CONCURRENCY": str(concurrency),
            "LOG_LEVEL": "INFO",
            # The backlog comes from 127.0.0.1 with a few addresses: no intake limits.
            "ORDER_RATE_LIMIT": "",
            "MAX_ORDERS_PER_EMAIL_PER_HOUR": "0",
        }
        settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
        provision(settings)
        engines = {name: db.make_engine(settings.database_url(name)) for name in STORE_NAMES}
        log_dir = work / prefix
        log_dir.mkdir(parents=True)
        programs = Programs(env, log_dir)
        try:
            programs.start(
                "web",
                str(VENV / "bin" / "gunicorn"),
                "--config",
                "python:web.gunicorn_conf",
                "web:create_app()",
            )
            for _ in range(instances):
                for name in SERVICE_NAMES:
                    programs.service(name)
            base_url = f"http://127.0.0.1:{settings.web_port}"
            wait_until(lambda: _ready(base_url), 120, "the web to be ready")
            wait_until(
                lambda: programs.logged("consumer started") == instances * len(SERVICE_NAMES),
                120,
                "every service instance to poll its queue",
            )
            say(f"  {instances} instance(s): {orders} orders into the outbox ...")
            post_orders(base_url, orders)
            programs.start("web_worker", str(VENV / "bin" / "python"), "-m", "web.worker")
            wait_until(
                lambda: all(count(engines[n], _handled(n)[0]) >= orders for n in SERVICE_NAMES),
                900,
                "the services",
            )
            pending = select(func.count()).where(order_services.c.status == "pending")
            wait_until(lambda: count(engines["web"], pending) == 0, 900, "the web")
            started = scalar(engines["web"], select(func.min(outbox.c.published_at)))
            services_done = max(scalar(engines[n], _handled(n)[1]) for n in SERVICE_NAMES)
            settled = scalar(engines["web"], select(func.max(order_services.c.updated_at)))
        finally:
            programs.stop()
            for engine in engines.values():
                engine.dispose()
    return Result(
        instances,
        orders,
        (services_done - started).total_seconds(),
        (settled - started).total_seconds(),
    )


def _ready(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def emulator(endpoint: str | None, work: Path) -> Iterator[str]:
    """The emulator to use: the one given, or a native LocalStack started here."""
    if endpoint:
        if not endpoint.startswith("http://127.0.0.1:"):
            raise SystemExit("--endpoint must be on 127.0.0.1")
        yield endpoint
        return
    localstack = NativeLocalStack(
        port=free_port(),
        state_dir=work / "localstack",
        init_dir=ROOT / "localstack" / "init",
        venv=ROOT / ".venv-localstack",
        services=("sns", "sqs", "ses", "sts"),
        extra_env={"PUBSUB_SOURCE": str(ROOT)},
    )
    say(f"starting native LocalStack on {localstack.endpoint_url} ...")
    with localstack:
        yield localstack.endpoint_url


@contextlib.contextmanager
def postgres(database_url: str | None) -> Iterator[str]:
    """The PostgreSQL server to use: the one given, or a throwaway cluster started here."""
    if database_url:
        yield (
            make_url(database_url)
            .set(drivername="postgresql+psycopg")
            .render_as_string(hide_password=False)
        )
        return
    say("starting a throwaway PostgreSQL cluster ...")
    with throwaway() as server:
        yield server.url


def format_table(results: Sequence[Result]) -> str:
    """A Markdown table of the figures, with the speed-up over one instance."""
    base = results[0]
    head = (
        "instances per service",
        "orders",
        "services done (s)",
        "orders/s",
        "speed-up",
        "web settled (s)",
        "orders/s",
    )
    rows = [
        [
            str(r.instances),
            str(r.orders),
            f"{r.services_seconds:.1f}",
            f"{r.services_rate:.0f}",
            f"{r.services_rate / base.services_rate:.2f}x",
            f"{r.settled_seconds:.1f}",
            f"{r.settled_rate:.0f}",
        ]
        for r in results
    ]
    return markdown(head, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--orders", type=int, default=600, help="orders per run")
    parser.add_argument(
        "--instances", default="1,2,4", help="instance counts to compare (default: 1,2,4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="handler threads per instance (default: 8)"
    )
    parser.add_argument("--endpoint", help="a running emulator on 127.0.0.1 (default: start one)")
    parser.add_argument(
        "--database-url", help="a PostgreSQL server that may create databases (default: start one)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per count (median kept)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",")]
    # This process's own clients (provisioning) talk only to the emulator.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    say(f"scale-out: {args.orders} orders, handler threads per instance: {args.concurrency}")
    say(f"  on {os.cpu_count()} CPUs, shared with the emulator and the database")
    results = []
    with tempfile.TemporaryDirectory(prefix="pubsub-scaleout-") as tmp:
        work = Path(tmp)
        with emulator(args.endpoint, work) as endpoint, postgres(args.database_url) as server:
            for instances in counts:
                result = run_one(instances, args.orders, endpoint, server, args.concurrency, work)
                say(
                    f"  {instances} instance(s): services {result.services_rate:.0f} orders/s, "
                    f"web settled {result.settled_rate:.0f} orders/s"
                )
                results.append(result)
    print()
    print(format_table(results))
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(r), "services_rate": r.services_rate} for r in results], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _handled(service: str) -> tuple[Any, Any]:
    """How many orders a service's store records as handled, and when the last one was."""
    if service == "email":
        # The email store keeps one record per confirmation, not idempotency records.
        sent = email_sends.c.status == SENT
        return (
            select(func.count()).select_from(email_sends).where(sent),
            select(func.max(email_sends.c.attempted_at)).where(sent),
        )
    return (
        select(func.count()).select_from(processed_events),
        select(func.max(processed_events.c.processed_at)),
    )
