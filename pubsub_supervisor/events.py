"""The versioned events that travel through SNS and SQS, and how they are encoded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pubsub_supervisor.errors import PoisonMessage

#: Schema version written into every event; consumers reject versions they do not know.
SCHEMA_VERSION = 1

ORDER_CREATED: Final = "order.created"
SERVICE_RESULT: Final = "order.service_result"

ServiceStatus = Literal["pending", "processed", "rejected", "failed"]


def new_id() -> str:
    """A random id for events and traces."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (None stays None)."""
    if value is None:
        return None
    # SQLite hands datetimes back without their zone; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    trace_id: str = Field(default_factory=new_id)


class OrderItem(BaseModel):
    """One line of an order, priced when the order was accepted."""

    model_config = ConfigDict(frozen=True)

    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class OrderCreated(_Event):
    """An order was accepted by the web and must be processed by every service."""

    event_type: Literal["order.created"] = ORDER_CREATED
    order_id: str
    customer_email: str
    items: tuple[OrderItem, ...]

    @property
    def total_cents(self) -> int:
        """Sum of quantity x unit price."""
        return sum(i.quantity * i.unit_price_cents for i in self.items)


class ServiceResult(_Event):
    """A service's outcome for one order, sent back to the web."""

    event_type: Literal["order.service_result"] = SERVICE_RESULT
    order_id: str
    service: str
    status: ServiceStatus
    reason: str | None = None
    #: Service-specific data the web may show (analytics sends its running summary).
    data: dict[str, Any] = Field(default_factory=dict)


Event = OrderCreated | ServiceResult
_TYPES: dict[str, type[OrderCreated] | type[ServiceResult]] = {
    ORDER_CREATED: OrderCreated,
    SERVICE_RESULT: ServiceResult,
}


def message_attributes(event: Event) -> dict[str, dict[str, str]]:
    """SNS message attributes: filterable and visible without parsing the body."""
    return {
        "event_id": {"DataType": "String", "StringValue": event.event_id},
        "event_type": {"DataType": "String", "StringValue": event.event_type},
        "trace_id": {"DataType": "String", "StringValue": event.trace_id},
    }


def encode(event: Event) -> str:
    """The JSON body published to SNS."""
    return event.model_dump_json()


def unwrap_body(body: str) -> dict[str, Any]:
    """Parse an SQS body, with or without the SNS notification envelope.

    :raise PoisonMessage: when the body is not a JSON object.
    """
    try:
        data = json.loads(body)
    except ValueError as error:
        raise PoisonMessage(f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise PoisonMessage("body is not a JSON object")
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return unwrap_body(data["Message"])
    return data


def decode(body: str) -> Event:
    """Parse and validate an event body.

    :raise PoisonMessage: for a malformed body, an unknown type or an unknown version.
    """
    data = unwrap_body(body)
    event_type = data.get("event_type")
    cls = _TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise PoisonMessage(f"unknown event type {event_type!r}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PoisonMessage(f"unsupported schema version {version!r} for {event_type}")
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PoisonMessage(f"invalid {event_type}: {where}: {first['msg']}") from None
