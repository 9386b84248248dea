"""The email service sends one confirmation per event, even when SES's answer is lost.

moto stands in for SES (it records what it sent but publishes no Send events, so the tests
hand the service the Send event SES would publish); the store is a real SQLite file. The
same path on the real emulator (its Send events included) is in
tests/integration/test_pipeline.py and in the kill -9 fault tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws
from moto.ses.models import ses_backends
from sqlalchemy import Engine, event, update

from pubsub_supervisor import db
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.events import OrderCreated, OrderItem, utcnow
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.topology import Arns, apply_topology, build_topology
from services.email import sends
from services.email.handler import EVENT_ID_TAG, EmailService
from services.email.sends import Decision, Send

SENDER = "orders@example.com"
TOPOLOGY = build_topology(prefix="t", services=("email",), email_identities=(SENDER,))
ACCOUNT = "123456789012"  # moto's default account
ARNS = Arns(account=ACCOUNT, region="us-east-1")


class LostAnswer:
    """An SES client whose SendEmail reaches SES (or not) and whose answer never comes back,
    as when the process is killed, or the connection drops, mid-call."""

    def __init__(self, ses: Any, *, reaches_ses: bool) -> None:
        self.ses = ses
        self.reaches_ses = reaches_ses
        self.calls = 0

    def send_email(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.reaches_ses:
            self.sent = self.ses.send_email(**kwargs)
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:4566")


@pytest.fixture
def ses(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        ses = boto3.client("ses", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        apply_topology(TOPOLOGY, sns=sns, sqs=sqs, ses=ses, arns=ARNS)
        yield ses


def sent_count() -> int:
    return len(ses_backends[ACCOUNT]["us-east-1"].sent_messages)


class Services:
    """Email services on one store, as successive processes of the email program."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path}/email.sqlite3")

    def __call__(
        self, ses: Any, *, confirm_seconds: int = 60, wait_seconds: float = 0.0
    ) -> EmailService:
        return EmailService(
            self.engine,
            ses,
            SENDER,
            lease_seconds=30,
            configuration_set=TOPOLOGY.configuration_set,
            confirm_seconds=confirm_seconds,
            wait_seconds=wait_seconds,
        )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Services]:
    services = Services(tmp_path)
    yield services
    services.engine.dispose()


def order() -> OrderCreated:
    item = OrderItem(sku="KB-001", name="Keyboard", quantity=1, unit_price_cents=4999)
    return OrderCreated(order_id="o-1", customer_email="buyer@example.com", items=(item,))


def send_event(event_id: str, ses_message_id: str) -> Message:
    """The message SES publishes (raw delivery) for an email it accepted."""
    body = {
        "eventType": "Send",
        "mail": {
            "messageId": ses_message_id,
            "source": SENDER,
            "destination": ["buyer@example.com"],
            "tags": {EVENT_ID_TAG: [event_id], "ses:configuration-set": ["t-email"]},
        },
        "send": {},
    }
    return Message(message_id="m-1", receipt_handle="r-1", body=json.dumps(body))


def age_attempt(svc: EmailService, event_id: str, seconds: float) -> None:
    """Make the recorded attempt `seconds` old."""
    with db.write(svc.engine) as conn:
        conn.execute(
            update(sends.email_sends)
            .where(sends.email_sends.c.event_id == event_id)
            .values(attempted_at=utcnow() - timedelta(seconds=seconds))
        )


def test_a_confirmation_goes_out_once_with_the_configuration_set_and_its_event_id(
    service: Services, ses: Any
) -> None:
    svc, event = service(ses), order()
    first = svc(event)
    again = svc(event)
    assert first.status == again.status == "processed"
    assert again.data["ses_message_id"] == first.data["ses_message_id"]
    assert sent_count() == 1
    attempt = sends.get(svc.engine, event.event_id)
    assert attempt is not None
    assert (attempt.attempts, attempt.ses_message_id) == (1, first.data["ses_message_id"])


def test_an_answer_lost_after_ses_sent_is_settled_by_its_send_event(
    service: Services, ses: Any
) -> None:
    event = order()
    lost = LostAnswer(ses, reaches_ses=True)
    with pytest.raises(ReadTimeoutError):
        service(lost)(event)
    assert sent_count() == 1
    # SES publishes its Send event; the email program's second consumer records it.
    ses_message_id = lost.sent["MessageId"]
    svc = service(ses)
    svc.on_send_event(send_event(event.event_id, ses_message_id))

    outcome = svc(event)  # the redelivery
    assert outcome.status == "processed"
    assert outcome.data["ses_message_id"] == ses_message_id
    assert sent_count() == 1


def test_an_answer_lost_before_ses_sent_is_sent_after_the_confirmation_window(
    service: Services, ses: Any
) -> None:
    event = order()
    with pytest.raises(ReadTimeoutError):
        service(LostAnswer(ses, reaches_ses=False))(event)
    svc = service(ses, confirm_seconds=60)
    # Within the window the redelivery waits for a Send event rather than risk a second email.
    with pytest.raises(RetryLater) as waiting:
        svc(event)
    assert 55 <= (waiting.value.delay or 0) <= 60
    assert sent_count() == 0
    # No Send event came: SES never took it, so it is sent now, once.
    age_attempt(svc, event.event_id, 61)
    assert svc(event).status == "processed"
    assert svc(event).status == "processed"
    assert sent_count() == 1
    attempt = sends.get(svc.engine, event.event_id)
    assert attempt is not None
    assert attempt.attempts == 2


def test_a_send_event_that_comes_late_still_prevents_the_second_email(
    service: Services, ses: Any
) -> None:
    event = order()
    lost = LostAnswer(ses, reaches_ses=True)
    with pytest.raises(ReadTimeoutError):
        service(lost)(event)
    svc = service(ses)
    with pytest.raises(RetryLater):
        svc(event)
    svc.on_send_event(send_event(event.event_id, lost.sent["MessageId"]))
    assert svc(event).data["ses_message_id"] == lost.sent["MessageId"]
    assert sent_count() == 1


def test_an_unreachable_ses_sent_nothing_and_is_retried_at_once(
    service: Services, ses: Any
) -> None:
    event = order()
    unreachable = boto3.client(
        "ses",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # nothing listens
    )
    with pytest.raises(EndpointConnectionError):
        service(unreachable)(event)
    assert service(ses)(event).status == "processed"
    assert sent_count() == 1


def test_a_refusal_from_ses_is_retried_at_once(service: Services, ses: Any) -> None:
    event = order()
    svc = service(ses)
    ses.delete_identity(Identity=SENDER)  # SES now refuses the sender: MessageRejected
    with pytest.raises(ClientError):
        svc(event)
    ses.verify_email_identity(EmailAddress=SENDER)
    # SES said no, so nothing went out: no wait for a Send event.
    assert svc(event).status == "processed"
    assert sent_count() == 1


def test_send_events_that_are_not_ours_are_ignored_and_garbage_is_poison(
    service: Services, ses: Any
) -> None:
    svc = service(ses)
    # SES's test message on creating the event destination, another sender's email.
    validation = "Successfully validated SNS topic for Amazon SES event publishing."
    svc.on_send_event(Message(message_id="v", receipt_handle="v", body=validation))
    svc.on_send_event(send_event("not-one-of-ours", "ses-1"))
    assert sends.get(svc.engine, "not-one-of-ours") is None
    with pytest.raises(PoisonMessage):
        svc.on_send_event(Message(message_id="g", receipt_handle="g", body="<html>"))
    with pytest.raises(PoisonMessage):
        svc.on_send_event(Message(message_id="g", receipt_handle="g", body="[1, 2]"))


def test_the_claim_is_left_free_while_waiting(service: Services, ses: Any) -> None:
    """A redelivery that waits for confirmation does not hold the event's claim, so the
    next delivery decides at once instead of waiting a lease out too."""
    event = order()
    with pytest.raises(ReadTimeoutError):
        service(LostAnswer(ses, reaches_ses=False))(event)
    svc = service(ses)
    with pytest.raises(RetryLater):
        svc(event)
    again = sends.begin(
        svc.engine, event.event_id, event.order_id, lease_seconds=30, confirm_seconds=60
    )
    assert again.decision is Decision.UNCONFIRMED  # not BUSY: no lease to wait out


def test_a_redelivery_waits_in_hand_for_a_send_event_on_its_way(
    service: Services, ses: Any
) -> None:
    """The usual crash: the redelivery comes while SES's Send event is still on its way.
    It waits for it in the handler (no receive spent) and sends nothing."""
    event = order()
    lost = LostAnswer(ses, reaches_ses=True)
    with pytest.raises(ReadTimeoutError):
        service(lost)(event)
    svc = service(ses, wait_seconds=5)
    timer = threading.Timer(
        0.5, svc.on_send_event, [send_event(event.event_id, lost.sent["MessageId"])]
    )
    timer.start()
    try:
        outcome = svc(event)
    finally:
        timer.join()
    assert outcome.data["ses_message_id"] == lost.sent["MessageId"]
    assert sent_count() == 1


class Transactions:
    """Counts the transactions an engine begins: BEGIN IMMEDIATE takes SQLite's write lock."""

    def __init__(self, engine: Engine) -> None:
        self.begun: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            self.begun.append(statement)

    def counts(self) -> tuple[int, int]:
        """(write, read) transactions so far; then starts counting again."""
        writes = self.begun.count("BEGIN IMMEDIATE")
        reads = self.begun.count("BEGIN DEFERRED")
        assert writes + reads == len(self.begun), self.begun
        self.begun.clear()
        return writes, reads


def test_a_confirmation_costs_two_write_transactions_and_no_read(
    service: Services, ses: Any
) -> None:
    """The claim and the attempt are one write before SES is called; SES's answer and the
    outcome are one write after (the two records of before took four writes and a read)."""
    svc, event = service(ses), order()
    transactions = Transactions(svc.engine)
    first = svc(event)
    assert transactions.counts() == (2, 0)
    # The duplicate reads the outcome in the transaction that would have begun an attempt.
    assert svc(event) == first
    assert transactions.counts() == (1, 0)
    # SES's Send event for it: one write, in the email program's other consumer.
    svc.on_send_event(send_event(event.event_id, first.data["ses_message_id"]))
    assert transactions.counts() == (1, 0)
    assert sent_count() == 1


NOW = utcnow()


def _send(status: str, *, ago: float = 0.0, lease: float | None = None) -> Send:
    """A record whose attempt began `ago` seconds before NOW, with a lease ending `lease`
    seconds after it."""
    return Send(
        status=status,
        attempts=1,
        attempted_at=NOW - timedelta(seconds=ago),
        claimed_until=None if lease is None else NOW + timedelta(seconds=lease),
        ses_message_id="ses-1" if status == sends.SENT else None,
    )


@pytest.mark.parametrize(
    ("found", "decision"),
    [
        (_send(sends.SENT), Decision.SENT),
        (_send(sends.ATTEMPTED, lease=10), Decision.BUSY),
        (_send(sends.ATTEMPTED, lease=-1, ago=1), Decision.UNCONFIRMED),
        (_send(sends.ATTEMPTED, ago=59), Decision.UNCONFIRMED),
        (_send(sends.ATTEMPTED, ago=61), Decision.SEND),
        (_send(sends.REFUSED), Decision.SEND),
        (replace(_send(sends.ATTEMPTED, ago=1), ses_message_id="ses-1"), Decision.RECOVERED),
        (replace(_send(sends.ATTEMPTED, lease=10), ses_message_id="ses-1"), Decision.BUSY),
    ],
)
def test_what_a_consumer_does_with_an_events_record(found: Send, decision: Decision) -> None:
    assert sends.decide(found, NOW, confirm_seconds=60) is decision


@pytest.mark.parametrize(
    ("listening_for", "decision"),
    [(59, Decision.UNCONFIRMED), (61, Decision.SEND)],
)
def test_silence_counts_only_while_send_events_are_read(
    listening_for: float, decision: Decision
) -> None:
    """An attempt made before a crash is 120 s old when the restarted service sees it
    again, but its Send event may still wait in the queue nobody read meanwhile: it is
    sent again only once the new process has been reading Send events long enough."""
    found = _send(sends.ATTEMPTED, ago=120)
    since = NOW - timedelta(seconds=listening_for)
    assert sends.decide(found, NOW, confirm_seconds=60, listening_since=since) is decision


def test_a_restarted_service_waits_for_send_events_it_has_not_read_yet(
    service: Services, ses: Any
) -> None:
    """A crash left an attempt without an answer; by the time the email program is back
    its confirmation window has passed, but the Send event may be waiting in the queue the
    new process only now starts to read: it waits for it instead of sending again."""
    event = order()
    lost = LostAnswer(ses, reaches_ses=True)
    with pytest.raises(ReadTimeoutError):
        service(lost)(event)
    age_attempt(service(ses), event.event_id, 61)
    restarted = service(ses, confirm_seconds=60)
    restarted.companions()  # its Send-events consumer starts with it
    with pytest.raises(RetryLater) as waiting:
        restarted(event)
    assert 55 <= (waiting.value.delay or 0) <= 60
    restarted.on_send_event(send_event(event.event_id, lost.sent["MessageId"]))
    assert restarted(event).data["ses_message_id"] == lost.sent["MessageId"]
    assert sent_count() == 1
