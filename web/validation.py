"""Validation of order requests, with errors named by the field a client must fix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from pubsub_supervisor.catalog import Product

#: Largest quantity of one SKU in one order; more is almost certainly a mistake.
MAX_QUANTITY = 1000
MAX_LINES = 50


class OrderItemIn(BaseModel):
    """One requested line."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class OrderIn(BaseModel):
    """The body of `POST /api/orders`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_email: EmailStr = Field(max_length=254)
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_LINES)


FieldError = dict[str, str]


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"])


def validate_order(
    payload: object, catalog: dict[str, Product]
) -> tuple[OrderIn | None, list[FieldError]]:
    """Check shape, types, ranges, and that every SKU exists once; return errors for each."""
    if not isinstance(payload, dict):
        return None, [{"field": "body", "message": "must be a JSON object"}]
    try:
        order = OrderIn.model_validate(payload)
    except ValidationError as error:
        return None, [
            {"field": _field_name(e["loc"]), "message": _message(e)} for e in error.errors()
        ]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, item in enumerate(order.items):
        if item.sku not in catalog:
            errors.append({"field": f"items[{i}].sku", "message": f"unknown SKU {item.sku!r}"})
        elif item.sku in seen:
            errors.append(
                {"field": f"items[{i}].sku", "message": "listed twice: combine the quantities"}
            )
        seen.add(item.sku)
    return (None, errors) if errors else (order, [])
