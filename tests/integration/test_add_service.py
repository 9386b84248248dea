"""README.md's "Add your own service", done in a copy of the project: the `shipping` service
it shows takes part in the pipeline without any other file edited.

The code comes from the README itself, so the walk-through and this test cannot drift apart.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import copy_project, require_emulator_venv, tracked_files
from tests.support.fixtures import PREFIX, stack_environment, start_localstack
from tests.support.stack import PROGRAMS, ROOT, VENV, Api, SupervisedStack, wait_for

pytestmark = pytest.mark.integration

SECTION = "## Add your own service"
NEW_FILES = {
    "services/shipping.py",
    "pubsub_supervisor/migrations/versions/shipping/shipping0001_baseline.py",
}
EDITED_FILES = {"pubsub_supervisor/registry.py", "supervisord.conf"}
#: Unit tests that hold in any project, with any services (registry, conf, healthcheck...).
PROJECT_UNIT_TESTS = (
    "tests/unit/test_registry.py",
    "tests/unit/test_supervisord_conf.py",
    "tests/unit/test_healthcheck.py",
    "tests/unit/test_compose_scale.py",
)


@dataclass(frozen=True)
class Step:
    """One code block of the README's section and the file it goes to."""

    path: str
    code: str


def readme_steps() -> list[Step]:
    """Each fenced block of the section, with the last file path named before it."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + len(SECTION))
    steps: list[Step] = []
    path: str | None = None
    block: list[str] | None = None
    indent = ""
    for line in text[start:end].splitlines():
        if block is None:
            fence = re.fullmatch(r"( *)```\w+", line)
            if fence:
                assert path, f"a code block in {SECTION!r} follows no `file path`"
                block, indent = [], fence[1]
                continue
            named = re.findall(r"`([\w./-]+\.(?:py|conf))`", line)
            path = named[-1] if named else path
        elif line == f"{indent}```":
            assert path is not None
            steps.append(Step(path, textwrap.dedent("\n".join(block)) + "\n"))
            block = None
        else:
            block.append(line)
    return steps


def add_to_registry(source: str, block: str) -> str:
    """Put the block's new entry (after the `...` of the existing ones) at the end of SERVICES."""
    lines = block.rstrip("\n").splitlines()
    assert lines[0] == "SERVICES: tuple[ServiceSpec, ...] = (", lines[0]
    assert lines[1].strip().startswith("...,"), lines[1]
    assert lines[-1] == ")", lines[-1]
    entry = "\n".join(lines[2:-1])
    start = source.index(lines[0])
    end = source.index("\n)\n", start)
    return source[:end] + "\n" + entry + source[end:]


def apply(home: Path, step: Step) -> None:
    """What the reader does with one block: a new file, or an addition to an existing one."""
    target = home / step.path
    if step.path == "pubsub_supervisor/registry.py":
        target.write_text(add_to_registry(target.read_text(), step.code))
    elif step.path == "supervisord.conf":
        target.write_text(target.read_text() + "\n" + step.code)
    else:
        assert not target.exists(), f"{step.path} is not a new file"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.code)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tracked files with the README's four steps applied."""
    home = copy_project(tmp_path_factory.mktemp("project"))
    steps = readme_steps()
    assert {s.path for s in steps} == NEW_FILES | EDITED_FILES
    for step in steps:
        apply(home, step)
    return home


def changed_files(home: Path) -> tuple[set[str], set[str]]:
    """(edited, added) files of the copy, compared with this project."""
    tracked = set(tracked_files())
    edited = {p for p in tracked if (home / p).read_bytes() != (ROOT / p).read_bytes()}
    ignored = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    present = {
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and not ignored & set(p.relative_to(home).parts)
    }
    return edited, present - tracked


def test_the_walk_through_edits_two_files_and_adds_two(project: Path) -> None:
    edited, added = changed_files(project)
    assert edited == EDITED_FILES
    assert added == NEW_FILES


def test_the_new_files_pass_the_linter(project: Path) -> None:
    result = subprocess.run(
        [str(VENV / "bin" / "ruff"), "check", "--no-cache", *sorted(NEW_FILES)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [str(VENV / "bin" / "ruff"), "format", "--check", "--no-cache", *sorted(NEW_FILES)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_registry_and_supervisord_conf_agree_in_the_copy(project: Path) -> None:
    result = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            *PROJECT_UNIT_TESTS,
        ],
        cwd=project,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project), "ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "test_every_service_program_runs_its_registry_entry[shipping] PASSED" in result.stdout


@dataclass
class Running:
    """The copy's stack: its emulator, its supervisord tree, and the web's API."""

    env: dict[str, str]
    stack: SupervisedStack
    api: Api


@pytest.fixture(scope="module")
def running(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """LocalStack provisioned by the copy's init hook, and the copy's supervisord tree."""
    require_emulator_venv()
    emulator = start_localstack(tmp_path_factory.mktemp("emulator"), home=project)
    try:
        env = stack_environment(
            emulator.endpoint_url,
            tmp_path_factory.mktemp("data"),
            # The copy's packages, not this project's (installed editable in the venv).
            PYTHONPATH=str(project),
            CONSUMER_WAIT_SECONDS="2",
        )
        stack = SupervisedStack(
            tmp_path_factory.mktemp("stack"),
            env,
            home=project,
            programs=(*PROGRAMS, "shipping_service"),
        )
        stack.start(timeout=180)
        try:
            yield Running(env, stack, Api(stack.base_url))
        finally:
            stack.stop()
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def order(running: Running) -> dict[str, object]:
    """One order, placed through the web and settled by every service."""
    response = running.api.post_order(
        f"ship-{uuid.uuid4().hex[:10]}@example.com",
        [{"sku": "KB-001", "quantity": 2}, {"sku": "MS-002", "quantity": 1}],
    )
    assert response.status_code == 201, response.text
    return running.api.wait_settled(response.json()["id"], timeout=90)


def test_the_new_service_receives_the_order_and_records_it_once(
    running: Running, order: dict[str, object]
) -> None:
    assert "shipping_service" in running.stack.status()
    store = Path(running.env["DATA_DIR"]) / "shipping.sqlite3"
    with closing(sqlite3.connect(store)) as conn:
        rows = conn.execute(
            "SELECT recipient, units FROM shipments WHERE order_id = ?", (order["id"],)
        ).fetchall()
        events = conn.execute(
            "SELECT status FROM processed_events WHERE order_id = ?", (order["id"],)
        ).fetchall()
    assert rows == [(order["customer_email"], 3)]
    assert events == [("processed",)]
    assert str(order["id"]) in running.stack.log_text("shipping_service")


def test_its_result_is_on_the_orders_api_and_page(
    running: Running, order: dict[str, object]
) -> None:
    services = order["services"]
    assert isinstance(services, dict)
    assert set(services) == {"email", "inventory", "analytics", "shipping"}
    assert services["shipping"]["status"] == "processed"
    assert services["shipping"]["reason"] == "shipment of 3 unit(s) recorded"
    assert order["status"] == "processed"
    page = running.api.get(f"/orders/{order['id']}")
    assert page.status_code == 200
    step = re.search(r'data-step="shipping">(.*?)</li>', page.text, re.DOTALL)
    assert step, "the order page has no shipping step"
    assert "shipment of 3 unit(s) recorded" in step[1]
    assert "processed" in step[1]
    listing = running.api.get("/orders")
    assert listing.status_code == 200
    assert '<th scope="col">shipping</th>' in listing.text


def test_its_queue_and_dlq_are_on_the_dashboard_and_exist(
    running: Running, order: dict[str, object]
) -> None:
    queue, dlq = f"{PREFIX}-shipping", f"{PREFIX}-shipping-dlq"

    def shipping_row() -> dict[str, object] | None:
        pipeline = running.api.get("/api/pipeline").json()
        row = next((q for q in pipeline["queues"] if q["name"] == queue), None)
        return row if row and row["counters"]["processed"] >= 1 else None

    row = wait_for(shipping_row, 30, f"{queue} on /api/pipeline with its counters")
    assert row["consumer"] == "shipping"
    assert row["dlq_name"] == dlq
    dashboard = running.api.get("/pipeline")
    assert dashboard.status_code == 200
    assert queue in dashboard.text
    sqs = boto3.client(
        "sqs",
        endpoint_url=running.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    assert attributes["Attributes"]["RedrivePolicy"].find(f":{dlq}") > 0
    assert sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]


def test_its_metrics_are_in_the_webs_metrics(running: Running, order: dict[str, object]) -> None:
    def processed() -> float:
        text = running.api.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "pubsub_messages_processed_total"
            and sample.labels.get("program") == "shipping_service"
            and sample.labels.get("queue") == f"{PREFIX}-shipping"
        )

    assert wait_for(processed, 30, "shipping_service's processed counter in /metrics") >= 1
