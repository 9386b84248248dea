"""`docker compose watch` (docker-compose.watch.yml): a code change on the host runs in the
app container, as `make watch` runs it.

The stack runs from a copy of the image's inputs (the files .dockerignore lets in), so the
test edits a handler without touching the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.emulator import free_port
from tests.support.compose import ComposeStack
from tests.support.docker import (
    BASE_IMAGES,
    LOCALSTACK_IMAGES,
    checkout_app_image,
    local_image,
    require_compose_v2,
)
from tests.support.stack import ROOT, Api, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.integration]

FILES = ("docker-compose.yml", "docker-compose.watch.yml")
HANDLER = Path("services/email/handler.py")
SUBJECT = 'subject = f"Order {event.order_id[:8]} received"'


def image_inputs() -> list[str]:
    """What the image copies: the `!path` lines of .dockerignore."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def copy_tree(target: Path) -> None:
    """What compose builds and mounts: the image's inputs, its Dockerfile, the hooks."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in [
        *image_inputs(),
        *FILES,
        "Dockerfile.supervisor",
        ".dockerignore",
        "localstack/init",
    ]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """The stack from a copy of the tree, healthy, with `docker compose watch` running."""
    require_compose_v2()
    root = tmp_path_factory.mktemp("tree")
    copy_tree(root)
    variables = {
        "LOCALSTACK_IMAGE": local_image("LOCALSTACK_IMAGE", LOCALSTACK_IMAGES),
        "BASE_IMAGE": local_image("BASE_IMAGE", BASE_IMAGES),
        # The checkout's image: the copy's code is the same, so the build is all cache.
        "APP_IMAGE": os.environ.get("APP_IMAGE") or checkout_app_image(ROOT),
        "APP_PORT": str(free_port()),
        "LOCALSTACK_PORT": str(free_port()),
    }
    project = f"pubsub-watch-{uuid.uuid4().hex[:8]}"
    stack = ComposeStack(root, project, variables, root / "empty.env", files=FILES)
    log_path = root / "watch.log"
    watcher: subprocess.Popen[bytes] | None = None
    try:
        stack.compose("up", "--build", "--detach", timeout=900)
        stack.wait_healthy("localstack")
        stack.wait_healthy("app")
        with log_path.open("wb") as log:
            watcher = subprocess.Popen(
                stack.command("watch"), cwd=root, env=stack.env, stdout=log, stderr=log
            )
        wait_for(
            lambda: "watch enabled" in log_path.read_text().lower() or watcher.poll() is not None,
            120,
            "docker compose watch to start watching",
            interval=1,
        )
        assert watcher.poll() is None, f"docker compose watch exited:\n{log_path.read_text()}"
        yield stack
    finally:
        if watcher is not None:
            watcher.terminate()
            try:
                watcher.wait(30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait(10)
        stack.down()


def app_containers(stack: ComposeStack) -> list[str]:
    """Ids of the app service's containers (none while it is being recreated)."""
    return stack.compose("ps", "-q", "app", check=False).stdout.split()


def test_a_changed_handler_runs_in_the_container_after_a_save(watched: ComposeStack) -> None:
    api = Api(f"http://127.0.0.1:{watched.env['APP_PORT']}")
    [before] = app_containers(watched)
    marker = f"watched-{uuid.uuid4().hex[:6]}"
    # When the email handler's subject line changes on the host
    handler = watched.root / HANDLER
    source = handler.read_text()
    assert SUBJECT in source, "the email subject line moved: update this test"
    handler.write_text(source.replace(SUBJECT, SUBJECT[:-1] + f' {marker}"'))
    saved = time.monotonic()

    # Then the image is rebuilt and the app container recreated on it, healthy again
    def recreated() -> bool:
        return app_containers(watched) not in ([], [before])

    try:
        wait_for(recreated, 300, "the app container to be recreated", interval=1)
    except AssertionError as error:
        log = (watched.root / "watch.log").read_text()[-3000:]
        raise AssertionError(f"{error}\ndocker compose watch said:\n{log}") from None
    watched.wait_healthy("app")
    print(f"docker compose watch: saved to healthy again in {time.monotonic() - saved:.1f} s")
    assert marker in watched.exec("app", "cat", f"/app/{HANDLER}")
    # And the next order's confirmation carries the new subject.
    buyer = f"buyer-{uuid.uuid4().hex[:12]}@example.com"
    order = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}]).json()
    assert api.wait_settled(order["id"], timeout=60)["services"]["email"]["status"] == "processed"
    emulator = f"http://127.0.0.1:{watched.env['LOCALSTACK_PORT']}"
    mails = requests.get(f"{emulator}/_aws/ses", timeout=10).json()["messages"]
    subjects = [m["Subject"] for m in mails if buyer in m["Destination"]["ToAddresses"]]
    assert subjects == [f"Order {order['id'][:8]} received {marker}"]
