"""The product catalog, shared by the web (names, prices) and inventory (initial stock)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pubsub_supervisor.errors import ConfigError


class Product(BaseModel):
    """One product on sale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1)
    price_cents: int = Field(ge=0)
    stock: int = Field(ge=0)


_PRODUCTS = TypeAdapter(list[Product])


def load_catalog(path: Path) -> dict[str, Product]:
    """Products by SKU.

    :raise ConfigError: when the file is missing, malformed or repeats a SKU.
    """
    try:
        products = _PRODUCTS.validate_python(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise ConfigError(f"CATALOG_PATH={path}: cannot load the catalog: {error}") from None
    by_sku = {p.sku: p for p in products}
    if len(by_sku) != len(products):
        raise ConfigError(f"CATALOG_PATH={path}: a SKU appears twice")
    return by_sku
