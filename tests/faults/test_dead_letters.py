"""Messages that cannot be processed: poison, and a handler that always fails. They end in
the dead-letter queue with a reason, the service keeps running, and `pubsub dlq redrive`
brings them back."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from pubsub_supervisor import dlq
from pubsub_supervisor.events import new_id
from tests.faults.conftest import FaultStack
from tests.support.orders import Figures, OrderStream
from tests.support.stack import ROOT, wait_for

pytestmark = pytest.mark.faults

#: Bodies no consumer can process, and the reason each must be dead-lettered with.
POISON = {
    "{this is not json": "poison: body is not JSON: Expecting property name",
    json.dumps({"event_type": "order.exploded", "schema_version": 1}): (
        "poison: unknown event type 'order.exploded'"
    ),
    json.dumps(
        {"event_type": "order.created", "schema_version": 99, "customer_email": "x@example.com"}
    ): "poison: unsupported schema version 99 for order.created",
}


def pubsub(fs: FaultStack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `pubsub` command against the stack, as an operator would."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pubsub"), *args],
        env={**os.environ, **fs.env, "ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dead_letters(fs: FaultStack, consumer: str) -> list[dlq.DeadLetter]:
    # A page larger than any of these tests' DLQs: each sees every message.
    page = dlq.list_dead_letters(fs.clients.sqs, fs.settings.topology.queue_for(consumer), 500)
    assert not page.more
    return page.letters


def wait_dead_letters(fs: FaultStack, consumer: str, count: int) -> list[dlq.DeadLetter]:
    """Wait until the consumer's DLQ holds `count` messages; returns them."""

    def holds() -> list[dlq.DeadLetter] | None:
        found = dead_letters(fs, consumer)
        return found if len(found) == count else None

    return wait_for(holds, 30, f"{count} message(s) in the {consumer} DLQ", interval=0.5)


def pid_of(fs: FaultStack, program: str) -> int | None:
    state, pid = fs.stack.status()[program]
    assert state == "RUNNING", program
    return pid


def test_poison_is_dead_lettered_at_once_while_good_orders_flow(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = crash_stack
    tag = "poison"
    spec = fs.settings.topology.queue_for("inventory")
    url = fs.clients.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
    pid = pid_of(fs, "inventory_service")
    fs.wait_idle()
    baseline = fs.ledger.baseline()
    with OrderStream(fs.api, tag, rate=10) as stream:
        stream.wait_accepted(20)
        for body in POISON:
            attributes: Any = {"event_id": {"DataType": "String", "StringValue": new_id()}}
            fs.clients.sqs.send_message(
                QueueUrl=url, MessageBody=body, MessageAttributes=attributes
            )
        dead = wait_dead_letters(fs, "inventory", 3)
        stream.wait_accepted(len(stream.accepted) + 20)
    fs.ledger.wait_settled(tag, timeout=60)
    figures = fs.ledger.account(
        "poison messages among good orders", tag, stream.accepted, baseline, len(dead)
    )
    record(figures)
    # Each was dead-lettered on its first receive, with its reason.
    for reason in POISON.values():
        assert [d for d in dead if d.reason.startswith(reason)], reason
    assert [d.receive_count for d in dead] == [1, 1, 1]
    assert all(d.source_queue == spec.name for d in dead)
    # The service never stopped, and every good order went through once.
    assert pid_of(fs, "inventory_service") == pid
    assert (figures.lost, figures.duplicated) == (0, 0)
    logged = fs.stack.log_text("inventory_service")
    assert logged.count('"message": "message dead-lettered"') >= 3

    listed = pubsub(fs, "dlq", "list", "--queue", "inventory")
    assert listed.returncode == 0, listed.stderr
    assert f"{spec.dlq_name}: 3 message(s), from {spec.name}" in listed.stdout
    assert "reason: poison: unknown event type 'order.exploded'" in listed.stdout

    # Redrive moves them back; they are still poison, so they return to the DLQ, and
    # the service is still running.
    moved = pubsub(fs, "dlq", "redrive", "--queue", "inventory")
    assert moved.returncode == 0, moved.stderr
    assert f"{spec.dlq_name} -> {spec.name}: moved 3" in moved.stdout
    again = wait_dead_letters(fs, "inventory", 3)
    assert {d.message_id for d in again}.isdisjoint(d.message_id for d in dead)
    assert pid_of(fs, "inventory_service") == pid
    assert pubsub(fs, "dlq", "redrive", "--queue", "nope").returncode == 2


def test_a_handler_that_always_fails_dead_letters_and_redrive_recovers(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    """SES refuses every send while the sender identity is not verified: each order's
    email fails maxReceiveCount times, reaches the DLQ and shows `failed` in the web.
    Once the identity is verified again, a redrive sends each confirmation once."""
    fs = crash_stack
    tag = "failing"
    sender = fs.settings.email_sender
    pid = pid_of(fs, "email_service")
    fs.wait_idle()
    baseline = fs.ledger.baseline()
    fs.clients.ses.delete_identity(Identity=sender)
    try:
        with OrderStream(fs.api, tag, rate=5) as stream:
            stream.wait_accepted(10)

        def email_failed_everywhere() -> bool:
            orders = fs.ledger.orders(tag)
            return len(orders) == len(stream.accepted) and all(
                o.services["email"] == "failed" for o in orders
            )

        wait_for(email_failed_everywhere, 60, "the web to show every email as failed")
        dead = dead_letters(fs, "email")
    finally:
        fs.clients.ses.verify_email_identity(EmailAddress=sender)
    order = fs.api.order(stream.accepted[0])
    assert order["status"] == "failed"
    assert order["services"]["email"]["status"] == "failed"
    assert "MessageRejected" in order["services"]["email"]["reason"]
    assert {o.services["inventory"] for o in fs.ledger.orders(tag)} == {"processed"}
    assert len(dead) == len(stream.accepted)
    assert {d.receive_count for d in dead} == {fs.settings.max_receive_count}
    assert all(
        d.reason.startswith("failed 3 times: MessageRejected: ") and "not verified" in d.reason
        for d in dead
    ), dead[0].reason
    assert {d.order_id for d in dead} == set(stream.accepted)
    assert pid_of(fs, "email_service") == pid

    moved = pubsub(fs, "dlq", "redrive", "--queue", "email")
    assert moved.returncode == 0, moved.stderr
    assert f"moved {len(dead)}" in moved.stdout

    def all_processed() -> bool:
        return all(set(o.services.values()) == {"processed"} for o in fs.ledger.orders(tag))

    wait_for(all_processed, 60, "every redriven order to be processed")
    figures = fs.ledger.account(
        "always-failing handler, then redrive", tag, stream.accepted, baseline, len(dead)
    )
    record(figures)
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert figures.notes["without_email"] == 0
    assert dead_letters(fs, "email") == []
