"""The benchmark's message: an `order.created` event as SNS raw delivery leaves it in SQS."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

#: Size every message body is padded to, so each contender moves the same bytes.
BODY_BYTES = 500


def order_created(seq: int) -> dict[str, Any]:
    """One `order.created` event, padded so its JSON body is exactly BODY_BYTES long."""
    event: dict[str, Any] = {
        "event_type": "order.created",
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "order": {
            "order_id": f"bench-{seq:07d}",
            "customer_email": f"customer{seq}@example.com",
            "currency": "EUR",
            "items": [
                {"sku": "SKU-1001", "name": "Ceramic mug", "quantity": 2, "unit_price": "12.50"},
                {"sku": "SKU-2002", "name": "Tea towel", "quantity": 1, "unit_price": "7.90"},
            ],
            "total": "32.90",
        },
        "pad": "",
    }
    missing = BODY_BYTES - len(json.dumps(event, separators=(",", ":")))
    if missing < 0:
        raise ValueError(f"event {seq} is {-missing} bytes over {BODY_BYTES}")
    event["pad"] = "x" * missing
    return event


def body(event: dict[str, Any]) -> str:
    """The compact JSON text of an event, as SNS raw delivery puts it in the SQS body."""
    return json.dumps(event, separators=(",", ":"))


def order_id(event: dict[str, Any]) -> str:
    """The key the harness counts deliveries by."""
    return str(event["order"]["order_id"])
