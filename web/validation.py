"""Validation of order requests, with errors named by the field a client must fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pubsub_supervisor.bounds import MAX_EMAIL, MAX_LINES, MAX_SKU, QUANTITY_CEILING, SesAddress
from pubsub_supervisor.catalog import Product

#: Largest quantity of one SKU in one order by default (MAX_QUANTITY_PER_LINE).
MAX_QUANTITY = 1000
#: Largest total of units in one order by default (MAX_UNITS_PER_ORDER).
MAX_UNITS = 5000
#: Largest value of a store cursor (SQLite's and PostgreSQL's 64-bit integers).
MAX_CURSOR = 2**63 - 1


@dataclass(frozen=True)
class OrderLimits:
    """The bounds of one order (from MAX_QUANTITY_PER_LINE and MAX_UNITS_PER_ORDER)."""

    per_line: int = MAX_QUANTITY
    per_order: int = MAX_UNITS


def parse_int(raw: str, low: int, high: int) -> int | None:
    """A whole number in ASCII digits (a leading '-' when `low` is negative) within
    [low, high]; None for anything else.

    The one rule of every number a form or a query string carries: `str.isdigit()` and
    `int()` accept "²", "٣" or "1_000", which no client means, and a number past SQLite's
    64-bit range must stop here, not in the store.
    """
    text = raw.strip()
    digits = text[1:] if text.startswith("-") and low < 0 else text
    widest = max(len(str(low)), len(str(high)))
    if not digits or len(text) > widest or not (digits.isascii() and digits.isdigit()):
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_quantity(raw: str) -> int | None:
    """A form quantity by the rule of `parse_int`; 0 means "none of this one", and the
    model's bounds then name what is wrong with a negative one."""
    return parse_int(raw, -QUANTITY_CEILING, QUANTITY_CEILING)


class OrderItemIn(BaseModel):
    """One requested line."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: str = Field(min_length=1, max_length=MAX_SKU)
    # MAX_QUANTITY_PER_LINE comes in the validation context; this bound keeps absurd
    # integers out whatever the context.
    quantity: int = Field(ge=1, le=QUANTITY_CEILING)

    @field_validator("quantity")
    @classmethod
    def _within_line_limit(cls, value: int, info: ValidationInfo) -> int:
        """At most the per-line limit of the validation context (MAX_QUANTITY by default)."""
        limits = (info.context or {}).get("limits") or OrderLimits()
        if value > limits.per_line:
            raise PydanticCustomError(
                "less_than_equal",
                "Input should be less than or equal to {le}",
                {"le": limits.per_line},
            )
        return value


class OrderIn(BaseModel):
    """The body of `POST /api/orders`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # ASCII only, as SES takes it; the event model checks the same again.
    customer_email: SesAddress = Field(max_length=MAX_EMAIL)
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
    payload: object, catalog: dict[str, Product], limits: OrderLimits | None = None
) -> tuple[OrderIn | None, list[FieldError]]:
    """Check shape, types, ranges, and that every SKU exists once; return errors for each."""
    limits = limits or OrderLimits()
    if not isinstance(payload, dict):
        return None, [{"field": "body", "message": "must be a JSON object"}]
    try:
        order = OrderIn.model_validate(payload, context={"limits": limits})
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
    units = sum(item.quantity for item in order.items)
    if not errors and units > limits.per_order:
        errors.append(
            {
                "field": "items",
                "message": f"at most {limits.per_order} units per order (got {units}): "
                "place several orders",
            }
        )
    return (None, errors) if errors else (order, [])
