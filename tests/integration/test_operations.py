"""What an operator uses on the real stack: GET /metrics, `pubsub status` and `publish-sample`."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.emulator import free_port
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.settings import Settings
from tests.support.stack import ROOT, Api, SupervisedStack, wait_for

pytestmark = pytest.mark.integration

PROGRAMS = ("web", "web_worker", "email_service", "inventory_service", "analytics_service")
CONSUMERS = ("web_worker", "email_service", "inventory_service", "analytics_service")


def scrape(api: Api) -> dict[str, list[tuple[dict[str, str], float]]]:
    """GET /metrics, parsed: sample name -> [(labels, value)]."""
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        value
        for found, value in samples.get(name, [])
        if all(found.get(k) == v for k, v in labels.items())
    )


def pubsub(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pubsub"), *args],
        env={**os.environ, **env, "ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_metrics_show_every_program(api: Api, stack_settings: Settings) -> None:
    before = scrape(api)
    order = api.post_order(
        f"m-{uuid.uuid4().hex[:8]}@example.com", [{"sku": "KB-001", "quantity": 1}]
    )
    api.wait_settled(order.json()["id"])

    def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        after = scrape(api)
        done = all(
            total(after, "pubsub_messages_processed_total", program=p)
            > total(before, "pubsub_messages_processed_total", program=p)
            for p in CONSUMERS
        )
        return after if done else None

    after = wait_for(counted, 15, "every consumer's processed count to grow")
    programs = {
        labels["program"]
        for name, rows in after.items()
        if name.startswith("pubsub_")
        for labels, _ in rows
    }
    assert programs == set(PROGRAMS)
    # Every pubsub series names its program.
    assert all(
        "program" in labels
        for n, rows in after.items()
        if n.startswith("pubsub_")
        for labels, _ in rows
    )
    created = dict(program="web", method="POST", endpoint="/api/orders", status="201")
    assert (
        total(after, "pubsub_http_requests_total", **created)
        >= total(before, "pubsub_http_requests_total", **created) + 1
    )
    assert total(after, "pubsub_http_request_duration_seconds_count", program="web") > 0
    # Published by the web on commit, or by the relay (web_worker), its safety net.
    published = sum(
        total(after, "pubsub_outbox_published_total", program=p) for p in ("web", "web_worker")
    )
    assert published >= 1
    assert any(
        labels["program"] == "web_worker"
        for labels, _ in after["pubsub_outbox_publish_failures_total"]
    )
    for program in CONSUMERS:
        assert total(after, "pubsub_messages_received_total", program=program) >= 1, program
        assert total(after, "pubsub_handler_duration_seconds_count", program=program) >= 1
        assert total(after, "pubsub_message_age_seconds_count", program=program) >= 1
        assert (program,) in {
            (labels["program"],) for labels, _ in after["pubsub_oldest_message_age_seconds"]
        }
    # Read on scrape: every queue and DLQ, and the outbox.
    queues = {labels["queue"] for labels, _ in after["pubsub_queue_messages"]}
    topology = stack_settings.topology
    assert queues == {q.name for q in topology.queues} | {q.dlq_name for q in topology.queues}
    assert total(after, "pubsub_sqs_up", program="web") == 1
    assert "pubsub_outbox_backlog" in after


def test_status_lists_every_queue_and_its_dlq(stack_env: dict[str, str]) -> None:
    result = pubsub(stack_env, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Queues at {stack_env['AWS_ENDPOINT_URL']}"
    assert lines[1].split() == [
        "QUEUE",
        "CONSUMER",
        "VISIBLE",
        "IN",
        "FLIGHT",
        "DELAYED",
        "DLQ",
        "DLQ",
        "MESSAGES",
    ]
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    for consumer in ("email", "inventory", "analytics", "web"):
        row = rows[f"pubsub-{consumer}"]
        assert row[1] == consumer
        assert row[5] == f"pubsub-{consumer}-dlq"
        assert all(cell.isdigit() for cell in (row[2], row[3], row[4], row[6]))


def test_direct_sample_reaches_the_services_and_status_check_sees_the_dead_results(
    stack: SupervisedStack, stack_env: dict[str, str], stack_settings: Settings
) -> None:
    result = pubsub(stack_env, "publish-sample", "--direct")
    assert result.returncode == 0, result.stderr
    fields = dict(
        line.strip().split(":", 1) for line in result.stdout.splitlines() if line.startswith("  ")
    )
    order_id, trace_id = fields["order id"].strip(), fields["trace id"].strip()

    def handled_by_services() -> bool:
        return all(
            order_id in stack.log_text(p) and trace_id in stack.log_text(p)
            for p in ("email_service", "inventory_service", "analytics_service")
        )

    wait_for(handled_by_services, 30, f"the services to handle direct order {order_id}")
    # The web never stored that order: its worker dead-letters each service's result.
    sqs = make_clients(stack_settings).sqs
    dlq = sqs.get_queue_url(QueueName="pubsub-web-dlq")["QueueUrl"]

    def results_dead_lettered() -> bool:
        attrs = sqs.get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) >= 3

    wait_for(results_dead_lettered, 30, "the three results in pubsub-web-dlq")
    try:
        checked = pubsub(stack_env, "status", "--check")
        assert checked.returncode == 3, checked.stdout + checked.stderr
        web_row = next(
            line for line in checked.stdout.splitlines() if line.startswith("pubsub-web ")
        )
        assert int(web_row.split()[-1]) >= 3
        assert "dead-letter queues" in checked.stdout
    finally:
        remove_results_for(sqs, dlq, order_id)


def remove_results_for(sqs: Any, url: str, order_id: str) -> None:
    """Delete the dead-lettered results of one order (leave everything else)."""
    for _ in range(10):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=5, WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            return
        for message in messages:
            if json.loads(message["Body"]).get("order_id") == order_id:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )


def test_sample_through_the_web_is_followed_to_processed(
    stack: SupervisedStack, stack_env: dict[str, str]
) -> None:
    result = pubsub(stack_env, "publish-sample", "--wait", "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    order_id = lines[0].split()[1]
    trace_id = lines[1].split(":", 1)[1].strip()
    assert lines[-1] == f"Order {order_id}: processed"
    assert {"  email: processed", "  inventory: processed", "  analytics: processed"} <= set(lines)
    for program in PROGRAMS:
        assert trace_id in stack.log_text(program), program


def test_commands_fail_clearly_when_nothing_answers(stack_env: dict[str, str]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    status = pubsub({**stack_env, "AWS_ENDPOINT_URL": nowhere}, "status", timeout=60)
    assert status.returncode == 1
    assert f"failed against {nowhere}" in status.stderr
    sample = pubsub(stack_env, "publish-sample", "--url", nowhere, timeout=60)
    assert sample.returncode == 1
    assert f"the web at {nowhere} did not answer" in sample.stderr


@pytest.mark.parametrize("command", ["status", "publish-sample"])
def test_every_command_has_help(command: str) -> None:
    result = pubsub({}, command, "--help")
    assert result.returncode == 0
    assert f"usage: pubsub {command}" in result.stdout
