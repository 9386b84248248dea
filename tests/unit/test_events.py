"""Events: encoding, the SNS envelope, and every way a body can be poison."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import (
    OrderCreated,
    OrderItem,
    as_utc,
    decode,
    encode,
    message_attributes,
)


def order() -> OrderCreated:
    return OrderCreated(
        order_id="o1",
        customer_email="a@example.com",
        items=(OrderItem(sku="KB-001", name="Keyboard", quantity=2, unit_price_cents=150),),
    )


def test_round_trip_raw_and_enveloped() -> None:
    event = order()
    body = encode(event)
    assert decode(body) == event
    envelope = json.dumps({"Type": "Notification", "MessageId": "m", "Message": body})
    assert decode(envelope) == event
    assert event.total_cents == 300


def test_attributes_carry_ids() -> None:
    event = order()
    attrs = message_attributes(event)
    assert attrs["event_id"]["StringValue"] == event.event_id
    assert attrs["event_type"]["StringValue"] == "order.created"
    # The trace travels as W3C trace context beside these (tracing.py), not as an id of ours.
    assert set(attrs) == {"event_id", "event_type"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"event_type": "order.shipped", "schema_version": 1}', "unknown event type"),
        ('{"event_type": "order.created", "schema_version": 99}', "unsupported schema version"),
        ('{"event_type": "order.created", "schema_version": 1}', "invalid order.created"),
    ],
)
def test_poison_bodies_are_named(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        decode(body)


def test_as_utc_reads_a_naive_stored_time_as_utc_and_converts_an_aware_one() -> None:
    naive = datetime(2026, 12, 1, 9, 30)
    assert as_utc(naive) == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert as_utc(naive).tzinfo is UTC
    paris = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(paris).isoformat() == "2026-12-01T09:30:00+00:00"
    assert as_utc(None) is None
