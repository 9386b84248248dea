"""The versioned events that travel through SNS and SQS, and how they are encoded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from pubsub_supervisor import registry, tracing
from pubsub_supervisor.bounds import (
    MAX_LINES,
    MAX_NAME,
    MAX_PRICE_CENTS,
    MAX_REASON,
    Id,
    Quantity,
    SesAddress,
    Sku,
)
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
    # Strict numbers and strings (a JSON "5" is no 5, a 5.0 no int); unknown fields are
    # ignored so that a newer producer's additions do not poison older consumers.
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: StrictInt = SCHEMA_VERSION
    event_id: Id = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    #: The W3C trace id of the trace the event belongs to (see tracing.py).
    trace_id: Id = Field(default_factory=tracing.current_trace_id)


class OrderItem(BaseModel):
    """One line of an order, priced when the order was accepted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    name: StrictStr = Field(min_length=1, max_length=MAX_NAME)
    #: The hard ceiling: MAX_QUANTITY_PER_LINE only tightens what the web accepts.
    quantity: Quantity
    unit_price_cents: StrictInt = Field(ge=0, le=MAX_PRICE_CENTS)


class OrderCreated(_Event):
    """An order was accepted by the web and must be processed by every service."""

    event_type: Literal["order.created"] = ORDER_CREATED
    order_id: Id
    customer_email: SesAddress
    items: tuple[OrderItem, ...] = Field(min_length=1, max_length=MAX_LINES)

    @property
    def total_cents(self) -> int:
        """Sum of quantity x unit price."""
        return sum(i.quantity * i.unit_price_cents for i in self.items)


class ServiceResult(_Event):
    """A service's outcome for one order, sent back to the web."""

    event_type: Literal["order.service_result"] = SERVICE_RESULT
    order_id: Id
    service: StrictStr
    status: ServiceStatus
    reason: StrictStr | None = Field(default=None, max_length=MAX_REASON)
    #: Service-specific data the web may show (analytics sends its summary); each
    #: service's projection in web/projections.py validates its own.
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str) -> str:
        """One of the services in the registry."""
        if value not in registry.names():
            raise ValueError(f"unknown service {value[:40]!r}")
        return value


Event = OrderCreated | ServiceResult
_TYPES: dict[str, type[OrderCreated] | type[ServiceResult]] = {
    ORDER_CREATED: OrderCreated,
    SERVICE_RESULT: ServiceResult,
}


def message_attributes(event: Event) -> dict[str, dict[str, str]]:
    """SNS message attributes: filterable and visible without parsing the body (the trace
    context is added beside them: tracing.py)."""
    return {
        "event_id": {"DataType": "String", "StringValue": event.event_id},
        "event_type": {"DataType": "String", "StringValue": event.event_type},
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
        # The message, not the input: the reason must not echo a forged value at length.
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PoisonMessage(f"invalid {event_type}: {where}: {first['msg']}") from None
