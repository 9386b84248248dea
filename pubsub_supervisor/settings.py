"""The one settings object: every program reads its configuration here, once, at start."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from pubsub_supervisor import registry
from pubsub_supervisor.bounds import MAX_LINES
from pubsub_supervisor.bounds import QUANTITY_CEILING as QUANTITY_CEILING
from pubsub_supervisor.topology import Topology, build_topology

#: Every order service (declared in pubsub_supervisor/registry.py).
SERVICE_NAMES: tuple[str, ...] = registry.names()
#: Every store: the web's and one per service that keeps one.
STORE_NAMES: tuple[str, ...] = ("web", *(s.store for s in registry.SERVICES if s.store))
#: Replaced by a store's name in DATABASE_URL.
STORE_PLACEHOLDER = "{store}"

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration from the environment and `.env`; see `.env.example` for each field."""

    # ENV_FILE picks another file (empty: none), e.g. to keep tests off a developer's .env.
    model_config = SettingsConfigDict(
        env_file=os.environ.get("ENV_FILE", ".env") or None, extra="ignore", frozen=True
    )

    #: Unset means real AWS; set it to the emulator (LocalStack: http://127.0.0.1:4566).
    aws_endpoint_url: str | None = None
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    #: Every AWS resource name starts with this prefix (one prefix per environment).
    resource_prefix: str = "pubsub"
    #: Receives before SQS moves a message to its dead-letter queue.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    #: Visibility timeout of the service queues, in seconds.
    queue_visibility_timeout: int = Field(default=12, ge=1, le=43200)

    web_host: str = "127.0.0.1"
    web_port: int = Field(default=3000, ge=1, le=65535)
    web_workers: int = Field(default=1, ge=1, le=64)
    web_threads: int = Field(default=8, ge=1, le=256)
    #: Read a template again when its file changes (`make dev` sets it; Flask caches them).
    web_templates_auto_reload: bool = False
    #: Signs the web's session cookie (its CSRF tokens). Unset: one is generated on first
    #: start and kept in DATA_DIR/web-secret-key, shared by every gunicorn worker.
    web_secret_key: SecretStr | None = None
    #: Password of the operator pages and APIs (HTTP Basic, user `operator`). Unset on an
    #: emulator: every route is open; unset on AWS: operator routes answer 404.
    operator_password: SecretStr | None = None
    #: Proxies in front of the web that set X-Forwarded-For/-Proto (0: none, trust no header).
    trusted_proxies: int = Field(default=0, ge=0, le=10)

    #: Orders one client address may place (API and form), in Flask-Limiter's notation
    #: ("30/minute", "100 per hour"); empty turns the limit off.
    order_rate_limit: str = "30/minute"
    #: Where the rate limiter counts: memory:// (each process on its own) or a shared
    #: store such as redis://host:6379 (every instance and worker together).
    rate_limit_storage_uri: str = "memory://"
    #: Orders (hence confirmation emails) one recipient address may receive per hour; 0
    #: turns the check off (it counts the store's orders of the last hour on each order).
    max_orders_per_email_per_hour: int = Field(default=10, ge=0, le=1_000_000)
    #: Largest quantity of one SKU in one order.
    max_quantity_per_line: int = Field(default=1000, ge=1, le=QUANTITY_CEILING)
    #: Largest total of units (every line together) in one order.
    max_units_per_order: int = Field(default=5000, ge=1, le=QUANTITY_CEILING * MAX_LINES)

    #: Directory for the SQLite files of the web and each service (when DATABASE_URL is unset).
    data_dir: Path = ROOT / "var" / "data"
    #: Where every store lives: unset means one SQLite file per store in DATA_DIR; a
    #: PostgreSQL URL puts each store in its own schema of that database (`{store}` in the
    #: URL, if present, is replaced by the store's name: one database per store).
    database: str = Field(default="", validation_alias=AliasChoices("database_url"))
    #: Product catalog shared by the web (prices) and inventory (initial stock).
    catalog_path: Path = ROOT / "pubsub_supervisor" / "catalog.json"

    #: Sender address of confirmation emails (a verified SES identity).
    email_sender: str = "orders@example.com"
    #: After a send whose answer never came (a crash, a timeout), seconds to wait for
    #: SES's "Send" event for it before sending again: SES publishes one for each email
    #: it accepted, so silence this long means it never went out (counted from the
    #: attempt, or from the start of the process reading the events, whichever is later).
    email_confirm_seconds: int = Field(default=60, ge=1, le=3600)

    #: Worker threads per consumer process.
    consumer_concurrency: int = Field(default=16, ge=1, le=256)
    #: Threads per consumer process calling ReceiveMessage (each a long poll when idle).
    consumer_pollers: int = Field(default=2, ge=1, le=16)
    #: Long-poll wait per ReceiveMessage call, in seconds (20 is the SQS maximum).
    consumer_wait_seconds: int = Field(default=20, ge=0, le=20)

    #: Publish each order's event from the web right after its commit (the relay's poll
    #: then only catches what that missed); off: the relay's poll publishes everything.
    outbox_publish_on_commit: bool = True
    #: Outbox relay: seconds between polls of the outbox when it is idle.
    outbox_poll_interval: float = Field(default=0.1, gt=0, le=60)
    #: Outbox relay: seconds a relay owns the rows it claimed; a dead relay's rows are
    #: picked up by another relay after this.
    outbox_claim_seconds: int = Field(default=30, ge=1, le=3600)
    #: Outbox relay: publish an order's event again when a service has not reported on
    #: it this many seconds after publication and no queue has a backlog (the broker
    #: lost it); 0 turns this off.
    outbox_republish_after: float = Field(default=120, ge=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Program name written in every log line; supervisord sets it per program.
    program_name: str = "pubsub"

    @field_validator("aws_endpoint_url", mode="before")
    @classmethod
    def _blank_endpoint_means_aws(cls, value: object) -> object:
        """An empty AWS_ENDPOINT_URL (as in `AWS_ENDPOINT_URL=`) means real AWS."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("web_secret_key", "operator_password", mode="before")
    @classmethod
    def _blank_secret_means_generated(cls, value: object) -> object:
        """An empty secret means unset (WEB_SECRET_KEY: generate one and keep it in DATA_DIR)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("order_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        """Fail at start, not on the first order, when the limit is not Flask-Limiter's notation."""
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"ORDER_RATE_LIMIT must read like '30/minute' or '100 per hour' (got "
                    f"{value!r}); leave it empty for no limit"
                ) from None
        return value.strip()

    @property
    def on_emulator(self) -> bool:
        """True when AWS_ENDPOINT_URL points at an emulator rather than real AWS."""
        return self.aws_endpoint_url is not None

    @field_validator("resource_prefix")
    @classmethod
    def _prefix_is_a_valid_name(cls, value: str) -> str:
        """Queue and topic names allow letters, digits, '-' and '_' only."""
        if not value or not all(c.isalnum() or c in "-_" for c in value) or len(value) > 40:
            raise ValueError(
                "RESOURCE_PREFIX must be 1-40 letters, digits, '-' or '_' "
                f"(got {value!r}); it starts every SNS topic and SQS queue name"
            )
        return value

    @field_validator("database", mode="before")
    @classmethod
    def _database_is_sqlite_or_postgres(cls, value: object) -> object:
        """Accept SQLite or PostgreSQL URLs; `postgresql://` means the psycopg 3 driver."""
        if not isinstance(value, str) or not value.strip():
            return ""
        url = value.strip()
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError(f"DATABASE_URL must be a URL (got {url!r})")
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            return f"postgresql+psycopg://{rest}"
        if scheme == "sqlite":
            if STORE_PLACEHOLDER not in rest:
                raise ValueError(
                    f"a SQLite DATABASE_URL needs {STORE_PLACEHOLDER} in its path (one file "
                    f"per store), e.g. sqlite:///var/data/{STORE_PLACEHOLDER}.sqlite3"
                )
            return url
        raise ValueError(
            f"DATABASE_URL must start with sqlite:// or postgresql+psycopg:// (got {scheme}://)"
        )

    @property
    def uses_postgres(self) -> bool:
        """True when the stores live in PostgreSQL."""
        return self.database.startswith("postgresql")

    @cached_property
    def topology(self) -> Topology:
        """The AWS resources this configuration names."""
        return build_topology(
            prefix=self.resource_prefix,
            services=registry.SERVICES,
            max_receive_count=self.max_receive_count,
            visibility_timeout=self.queue_visibility_timeout,
            email_identities=(self.email_sender,),
        )

    def database_url(self, store: str) -> str:
        """SQLAlchemy URL of one store (`web`, `email`, `inventory`, `analytics`).

        On PostgreSQL the URL selects the store's schema (search_path) and UTC sessions.
        """
        if not self.database:
            return f"sqlite:///{self.data_dir / f'{store}.sqlite3'}"
        url = self.database.replace(STORE_PLACEHOLDER, store)
        if not self.uses_postgres:
            return url
        return (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={store} -ctimezone=UTC"})
            .render_as_string(hide_password=False)
        )
