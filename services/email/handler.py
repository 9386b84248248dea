"""Render an order confirmation (text and HTML) and send it through SES, once per event."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pubsub_supervisor import idempotency
from pubsub_supervisor.clients import AwsClients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.events import OrderCreated, utcnow
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import EMAIL_SENDS
from services.email import sends

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


#: Tag carrying the event id on every confirmation (SES repeats it in the Send event).
EVENT_ID_TAG = "event_id"
#: What SES publishes to a topic when an event destination is created on it.
_VALIDATION_MESSAGE = "Successfully validated SNS topic"
#: How often a redelivery waiting for an earlier attempt's Send event looks for it.
CONFIRM_POLL_SECONDS = 0.25


def _never_sent(error: Exception) -> bool:
    """Whether a failed SendEmail certainly sent nothing: SES answered with a client error,
    or the connection was never made. A 5xx or a lost answer may hide a sent email."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        return int(status) < 500
    return isinstance(error, EndpointConnectionError | ConnectTimeoutError)


class EmailService:
    """Sends one confirmation per order event, and never a second one for the same event.

    See `services.email.sends` for how a send whose answer was lost is settled.
    """

    def __init__(
        self,
        engine: Engine,
        ses: SESClient,
        sender: str,
        lease_seconds: int,
        *,
        configuration_set: str | None = None,
        confirm_seconds: int = 60,
        wait_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.ses = ses
        self.sender = sender
        self.lease_seconds = lease_seconds
        self.configuration_set = configuration_set
        self.confirm_seconds = confirm_seconds
        self.wait_seconds = wait_seconds
        migrate(engine, "email")

    @classmethod
    def build(cls, settings: Settings, clients: AwsClients) -> EmailService:
        """From the settings."""
        return cls(
            make_engine(settings.database_url("email")),
            clients.ses,
            settings.email_sender,
            settings.queue_visibility_timeout,
            configuration_set=settings.topology.configuration_set,
            confirm_seconds=settings.email_confirm_seconds,
        )

    def companions(self) -> dict[str, Callable[[Message], None]]:
        """The other queue the email program consumes: SES's Send events."""
        return {EMAIL_SENDS: self.on_send_event}

    def __call__(self, event: OrderCreated) -> Outcome:
        """Send the confirmation unless this event already had one."""
        done = idempotency.claim(self.engine, event.event_id, event.order_id, self.lease_seconds)
        if done is not None:
            log.info("confirmation already sent", extra={"duplicate": True})
            return done
        earlier = sends.get(self.engine, event.event_id)
        if earlier is not None and earlier.attempted_at is not None:
            # An earlier attempt has no known answer (its process died, or the answer
            # was lost): SES's Send event says whether it went out.
            earlier = self._await_confirmation(event.event_id, earlier)
        if earlier is not None and earlier.ses_message_id is not None:
            # SES took it (its answer, or its Send event after the answer was lost).
            return self._complete(event, earlier.ses_message_id, recovered=True)
        if earlier is not None and earlier.attempted_at is not None:
            waited = (utcnow() - earlier.attempted_at).total_seconds()
            if waited < self.confirm_seconds:
                idempotency.release(self.engine, event.event_id)
                log.warning(
                    "an earlier send has no answer; waiting for SES to confirm it",
                    extra={"attempts": earlier.attempts, "waited_s": round(waited, 1)},
                )
                raise RetryLater(
                    "waiting for SES to confirm an earlier send",
                    delay=max(1, math.ceil(self.confirm_seconds - waited)),
                )
            log.warning(
                "an earlier send was never confirmed by SES; sending again",
                extra={"attempts": earlier.attempts, "waited_s": round(waited, 1)},
            )
        return self._send(event, earlier)

    def _await_confirmation(self, event_id: str, earlier: sends.Attempt) -> sends.Attempt:
        """Wait here (the heartbeat keeps the message) up to `wait_seconds` for the Send
        event of an earlier attempt, rather than spend one of the message's receives."""
        assert earlier.attempted_at is not None
        window_ends = earlier.attempted_at + timedelta(seconds=self.confirm_seconds)
        deadline = min(window_ends, utcnow() + timedelta(seconds=self.wait_seconds))
        while earlier.ses_message_id is None and utcnow() < deadline:
            time.sleep(CONFIRM_POLL_SECONDS)
            earlier = sends.get(self.engine, event_id) or earlier
        return earlier

    def _send(self, event: OrderCreated, earlier: sends.Attempt | None) -> Outcome:
        subject, text, html = render(event)
        extra: dict[str, Any] = {}
        if self.configuration_set:
            extra["ConfigurationSetName"] = self.configuration_set
            extra["Tags"] = [{"Name": EVENT_ID_TAG, "Value": event.event_id}]
        if not sends.begin(self.engine, event.event_id, event.order_id, earlier):
            idempotency.release(self.engine, event.event_id)
            raise RetryLater("another consumer is sending this confirmation", delay=1)
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
                **extra,
            )
        except (ClientError, EndpointConnectionError, ConnectTimeoutError) as error:
            if _never_sent(error):
                # SES answered "no" (rejected, throttled), or was never reached.
                sends.refused(self.engine, event.event_id)
            idempotency.release(self.engine, event.event_id)
            raise
        except Exception:
            # No answer (a timeout, the connection dropped): it may have gone out. The
            # retry waits for SES's Send event before it sends again.
            idempotency.release(self.engine, event.event_id)
            raise
        sends.accepted(self.engine, event.event_id, response["MessageId"])
        return self._complete(event, response["MessageId"])

    def _complete(
        self, event: OrderCreated, ses_message_id: str, *, recovered: bool = False
    ) -> Outcome:
        data: dict[str, Any] = {"ses_message_id": ses_message_id}
        if recovered:
            log.info("an earlier send went out; not sending again", extra={"ses": ses_message_id})
        outcome = Outcome("processed", data=data)
        idempotency.complete(self.engine, event.event_id, outcome)
        return outcome

    def on_send_event(self, message: Message) -> None:
        """Record SES's Send event for a confirmation (the `email-sends` queue)."""
        body = message.body
        try:
            event = json.loads(body)
        except ValueError:
            if body.startswith(_VALIDATION_MESSAGE):
                return
            raise PoisonMessage("not an SES event: not JSON") from None
        if not isinstance(event, dict) or "mail" not in event:
            raise PoisonMessage("not an SES event: no mail")
        if event.get("eventType", event.get("notificationType")) != "Send":
            return
        mail = event["mail"]
        tags = mail.get("tags") or {}
        event_ids = tags.get(EVENT_ID_TAG) or []
        ses_message_id = mail.get("messageId")
        if not event_ids or not ses_message_id:
            log.info("send event without an event id, ignored", extra={"ses": ses_message_id})
            return
        if not sends.confirm(self.engine, event_ids[0], ses_message_id):
            log.info("send event for an unknown attempt, ignored", extra={"ses": ses_message_id})
