"""Render an order confirmation (text and HTML) and send it through SES, once per event."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape

from pubsub_supervisor.aws import AwsClients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import OrderCreated
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import Settings
from services import idempotency
from services.idempotency import Outcome

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


def money(cents: int) -> str:
    """12345 -> '$123.45'."""
    return f"${cents // 100:,}.{cents % 100:02d}"


_templates.filters["money"] = money


def render(event: OrderCreated) -> tuple[str, str, str]:
    """Subject, text body and HTML body of the confirmation."""
    context = {"order": event, "total_cents": event.total_cents}
    subject = f"Order {event.order_id[:8]} received"
    text = _templates.get_template("confirmation.txt").render(context)
    html = _templates.get_template("confirmation.html").render(context)
    return subject, text, html


class EmailService:
    """Sends one confirmation per order event."""

    def __init__(self, engine: Engine, ses: SESClient, sender: str, lease_seconds: int) -> None:
        self.engine = engine
        self.ses = ses
        self.sender = sender
        self.lease_seconds = lease_seconds
        migrate(engine, "email")

    @classmethod
    def build(cls, settings: Settings, clients: AwsClients) -> EmailService:
        """From the settings."""
        return cls(
            make_engine(settings.database_url("email")),
            clients.ses,
            settings.email_sender,
            settings.queue_visibility_timeout,
        )

    def __call__(self, event: OrderCreated) -> Outcome:
        """Send the confirmation unless this event already had one."""
        done = idempotency.claim(self.engine, event.event_id, event.order_id, self.lease_seconds)
        if done is not None:
            log.info("confirmation already sent", extra={"duplicate": True})
            return done
        subject, text, html = render(event)
        try:
            response = self.ses.send_email(
                Source=self.sender,
                Destination={"ToAddresses": [event.customer_email]},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": text, "Charset": "UTF-8"},
                        "Html": {"Data": html, "Charset": "UTF-8"},
                    },
                },
            )
        except Exception:
            idempotency.release(self.engine, event.event_id)
            raise
        outcome = Outcome("processed", data={"ses_message_id": response["MessageId"]})
        idempotency.complete(self.engine, event.event_id, outcome)
        return outcome
