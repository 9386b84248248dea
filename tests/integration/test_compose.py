"""docker-compose.yml as the README runs it: LocalStack and the one supervisor container.

The stack is the README's `docker compose up --build` (detached, in a compose project of
its own, with the images this machine has), reached only on 127.0.0.1.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devtools.emulator import free_port, port_is_free
from tests.support.compose import ComposeStack
from tests.support.docker import BASE_IMAGES, LOCALSTACK_IMAGES, checkout_app_image, local_image
from tests.support.stack import PROGRAMS, ROOT, Api, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.integration]

LISTENERS = ("log_forwarder", "fatal_exit")
#: The compose file's stop_grace_period (tests/unit/test_supervisord_conf.py reads it too).
GRACE_SECONDS = 120
#: How long a message taken by a killed consumer stays invisible (the queues' default).
VISIBILITY_SECONDS = 30


def app_port() -> int:
    """APP_PORT when set, else the README's 3001 when free, else any free port."""
    if os.environ.get("APP_PORT"):
        return int(os.environ["APP_PORT"])
    return 3001 if port_is_free(3001) else free_port()


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """`up --build -d`, both healthchecks passed; `down -v` at the end."""
    variables = {
        "LOCALSTACK_IMAGE": local_image("LOCALSTACK_IMAGE", LOCALSTACK_IMAGES),
        "BASE_IMAGE": local_image("BASE_IMAGE", BASE_IMAGES),
        "APP_IMAGE": os.environ.get("APP_IMAGE") or checkout_app_image(ROOT),
        "APP_PORT": str(app_port()),
        "LOCALSTACK_PORT": str(free_port()),
    }
    project = f"pubsub-test-{uuid.uuid4().hex[:8]}"
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    stack = ComposeStack(ROOT, project, variables, env_file)
    try:
        started = time.monotonic()
        stack.compose("up", "--build", "--detach", timeout=900)
        stack.wait_healthy("localstack")
        stack.wait_healthy("app")
        print(f"compose stack healthy in {time.monotonic() - started:.1f} s")
        yield stack
    finally:
        stack.down()


@pytest.fixture
def api(compose: ComposeStack) -> Api:
    """The web, published on 127.0.0.1; waits until the app is healthy (again)."""
    compose.wait_healthy("app")
    return Api(f"http://127.0.0.1:{compose.env['APP_PORT']}")


def emulator_url(compose: ComposeStack) -> str:
    return f"http://127.0.0.1:{compose.env['LOCALSTACK_PORT']}"


def email() -> str:
    return f"buyer-{uuid.uuid4().hex[:12]}@example.com"


def services(order: dict[str, Any]) -> dict[str, str]:
    return {name: s["status"] for name, s in order["services"].items()}


ALL_PROCESSED = {"email": "processed", "inventory": "processed", "analytics": "processed"}


def test_orders_flow_through_the_published_port(compose: ComposeStack, api: Api) -> None:
    assert api.get("/readyz").json()["checks"] == {"database": "ok", "sns": "ok", "sqs": "ok"}
    buyers = [email() for _ in range(3)]
    ids = [api.post_order(b, [{"sku": "KB-001", "quantity": 1}]).json()["id"] for b in buyers]
    for order_id in ids:
        order = api.wait_settled(order_id, timeout=60)
        assert services(order) == ALL_PROCESSED
        assert order["status"] == "processed"
    # The emails really went through the emulator's SES, from inside the compose network.
    mails = requests.get(f"{emulator_url(compose)}/_aws/ses", timeout=10).json()["messages"]
    recipients = {to for m in mails for to in m["Destination"]["ToAddresses"]}
    assert set(buyers) <= recipients


def test_supervisorctl_shows_every_program_and_logs_go_both_ways(
    compose: ComposeStack, api: Api
) -> None:
    states = compose.programs()
    assert {name: state for name, (state, _) in states.items()} == dict.fromkeys(
        [*PROGRAMS, *LISTENERS], "RUNNING"
    )
    # Its own log file, read by `supervisorctl tail`...
    tail = compose.exec("app", "supervisorctl", "tail", "email_service")
    assert '"program": "email_service"' in tail
    assert "consumer started" in tail
    # ...and the console, each line marked with its program (`docker compose logs app`).
    console = compose.compose("logs", "--no-color", "app").stdout
    for program in ("web", "web_worker", "email_service", "inventory_service"):
        assert f" {program:<17}| " in console, program
    # Not root, and only that user can reach the control socket.
    assert compose.exec("app", "id", "-u").strip() == "10001"
    assert compose.exec("app", "stat", "-c", "%a", "/run/pubsub/supervisor.sock").strip() == "700"


def test_a_killed_program_is_restarted(compose: ComposeStack, api: Api) -> None:
    state, pid = compose.programs()["email_service"]
    assert state == "RUNNING"
    assert pid is not None
    # kill is a shell builtin here (the image has no procps).
    compose.exec("app", "sh", "-c", f"kill -KILL {pid}")

    def restarted() -> bool:
        new_state, new_pid = compose.programs()["email_service"]
        return new_state == "RUNNING" and new_pid not in (None, pid)

    wait_for(restarted, 60, "supervisord to restart email_service", interval=1)
    order = api.post_order(email(), [{"sku": "MS-002", "quantity": 1}]).json()
    # The killed consumer's open long poll may have taken the message: it comes back when
    # its visibility timeout ends.
    settled = api.wait_settled(order["id"], timeout=VISIBILITY_SECONDS + 60)
    assert services(settled) == ALL_PROCESSED


class Load:
    """Places orders in a loop on a thread; keeps the ids of the accepted ones (201)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.accepted: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(
                    f"{self.api.base_url}/api/orders",
                    json={"customer_email": email(), "items": [{"sku": "CB-005", "quantity": 1}]},
                    timeout=5,
                )
            except requests.RequestException:
                # Refused or cut off while the web stops: not accepted, so not counted.
                self.failures += 1
                time.sleep(0.05)
                continue
            if response.status_code == 201:
                self.accepted.append(response.json()["id"])
            else:
                self.failures += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_stop_under_load_is_graceful_and_loses_nothing(compose: ComposeStack, api: Api) -> None:
    with Load(api) as load:
        wait_for(lambda: len(load.accepted) >= 20, 30, "20 orders accepted before the stop")
        started = time.monotonic()
        compose.compose("stop", "app", timeout=GRACE_SECONDS + 60)
        stopped_in = time.monotonic() - started
    info = compose.inspect("app")
    print(f"docker stop under load: {stopped_in:.1f} s, {len(load.accepted)} orders accepted")
    # supervisord stopped every program itself (exit 0), well before docker's SIGKILL.
    assert info["State"]["ExitCode"] == 0, compose.logs("app")
    assert stopped_in < GRACE_SECONDS
    # A new container on the same data volume picks up where the old one stopped.
    compose.compose("up", "--detach", "--no-deps", "--force-recreate", "app")
    compose.wait_healthy("app")
    for order_id in load.accepted:
        order = api.wait_settled(order_id, timeout=120)
        assert services(order) == ALL_PROCESSED, order


def test_a_program_that_keeps_failing_makes_the_container_exit(
    compose: ComposeStack, api: Api
) -> None:
    # Given inventory_service cannot start: its catalog setting names a missing file
    broken = {"CATALOG_PATH": "/nonexistent/catalog.json"}
    compose.compose("up", "--detach", "--no-deps", "app", extra_env=broken)
    try:
        # Then it goes FATAL, supervisord stops, the container exits and the restart
        # policy starts it again.
        def restarted_by_docker() -> bool:
            return int(compose.inspect("app")["RestartCount"]) >= 1

        wait_for(restarted_by_docker, 240, "the app container to exit and restart", interval=2)
        console = compose.compose("logs", "--no-color", "app").stdout
        assert "program inventory_service is FATAL" in console
        assert "CATALOG_PATH=/nonexistent/catalog.json" in console
        assert "inventory_service entered FATAL state" in console
    finally:
        # Back to the working configuration for whatever runs next.
        compose.compose("up", "--detach", "--no-deps", "app")
