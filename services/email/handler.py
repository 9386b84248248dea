"""Render an order confirmation (text and HTML) and send it through SES, once per order."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pubsub_supervisor.bounds import MAX_REASON
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
from services.email.sends import Decision

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


def _since(moment: datetime | None) -> float:
    """Seconds from `moment` to now (negative: still ahead)."""
    assert moment is not None
    return (utcnow() - moment).total_seconds()


def _outcome(ses_message_id: str | None) -> Outcome:
    return Outcome("processed", data={"ses_message_id": ses_message_id})


#: Client errors that say "not now", not "never": retried like a 5xx.
_THROTTLED = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestThrottled"}
)
#: Client errors about this stack's own credentials or configuration, not the order: an
#: operator fixes them and a redrive sends the confirmation, so they are retried too.
_OURS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AccountSendingPausedException",
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetSendingPausedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "MailFromDomainNotVerified",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)


def permanent_refusal(error: Exception, sender: str) -> str | None:
    """Why SES refused this email for good (a 4xx about the address or the message: a
    `MessageRejected`, an `InvalidParameterValue`), or None when a retry may succeed
    (throttling, a 5xx, no answer, a refusal of the sender or of the stack's own setup)."""
    if not isinstance(error, ClientError):
        return None
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = str(details.get("Message", ""))
    if not 400 <= status < 500 or code in _THROTTLED or code in _OURS:
        return None
    if sender.lower() in message.lower():
        return None  # the sender is not verified: the stack's setup, fixed by an operator
    return f"SES refused the confirmation: {code}: {message}"[:MAX_REASON]


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
        #: Since when this process reads SES's Send events (None: it does not).
        self.listening_since: datetime | None = None
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
        # Its consumer starts now; an earlier attempt's silence counts only from here.
        self.listening_since = utcnow()
        return {EMAIL_SENDS: self.on_send_event}

    def __call__(self, event: OrderCreated) -> Outcome:
        """Send the confirmation unless this event already had one."""
        start = self._begin(event)
        if start.decision is Decision.UNCONFIRMED and self._await_confirmation(
            event.event_id, start.send
        ):
            start = self._begin(event)
        send = start.send
        match start.decision:
            case Decision.REJECTED:
                log.info("SES refused this confirmation for good", extra={"reason": send.reason})
                return Outcome("rejected", reason=send.reason)
            case Decision.ANOTHER_EVENT:
                return self._another_event(send)
            case Decision.SEND:
                if start.found is not None and start.found.status == sends.ATTEMPTED:
                    log.warning(
                        "an earlier send was never confirmed by SES; sending again",
                        extra={
                            "attempts": start.found.attempts,
                            "waited_s": round(_since(start.found.attempted_at), 1),
                        },
                    )
                return self._send(event, send.attempts)
            case Decision.SENT:
                log.info("confirmation already sent", extra={"duplicate": True})
            case Decision.RECOVERED:
                log.info(
                    "an earlier send went out; not sending again",
                    extra={"ses": send.ses_message_id},
                )
            case Decision.BUSY:
                assert send.claimed_until is not None
                # Come back when the lease ends, not a whole lease later.
                raise RetryLater(
                    "another consumer is sending this confirmation",
                    delay=math.ceil(-_since(send.claimed_until)) + 1,
                )
            case Decision.UNCONFIRMED:
                waited = _since(send.attempted_at)
                log.warning(
                    "an earlier send has no answer; waiting for SES to confirm it",
                    extra={"attempts": send.attempts, "waited_s": round(waited, 1)},
                )
                raise RetryLater(
                    "waiting for SES to confirm an earlier send",
                    delay=max(1, math.ceil(-_since(self._confirmation_due(send)))),
                )
        return _outcome(send.ses_message_id)

    def _begin(self, event: OrderCreated) -> sends.Start:
        return sends.begin(
            self.engine,
            event.event_id,
            event.order_id,
            lease_seconds=self.lease_seconds,
            confirm_seconds=self.confirm_seconds,
            listening_since=self.listening_since,
            per_order=True,
        )

    def _confirmation_due(self, earlier: sends.Send) -> datetime:
        assert earlier.attempted_at is not None
        return sends.confirmation_due(
            earlier.attempted_at, self.confirm_seconds, self.listening_since
        )

    def _another_event(self, first: sends.Send) -> Outcome:
        """The order came again under a new event id: answer the first one's outcome, and
        never send a second email."""
        log.warning("order replayed under a new event id; not sending again")
        if first.status == sends.SENT or first.ses_message_id is not None:
            return _outcome(first.ses_message_id)
        if first.status == sends.REJECTED:
            return Outcome("rejected", reason=first.reason)
        raise RetryLater(
            "the order's confirmation is in hand under another event id", delay=self.lease_seconds
        )

    def _await_confirmation(self, event_id: str, earlier: sends.Send) -> bool:
        """Wait up to `wait_seconds` for an earlier attempt's Send event; True when there
        is something new to decide (the record changed, or the confirmation window ended)."""
        # Waiting in hand (the heartbeat keeps the message) spends none of its receives.
        window_ends = self._confirmation_due(earlier)
        deadline = min(window_ends, utcnow() + timedelta(seconds=self.wait_seconds))
        while utcnow() < deadline:
            time.sleep(CONFIRM_POLL_SECONDS)
            if sends.get(self.engine, event_id) != earlier:
                return True
        return utcnow() >= window_ends

    def _send(self, event: OrderCreated, attempt: int) -> Outcome:
        """Call SES for an attempt `begin` recorded, and record its answer."""
        subject, text, html = render(event)
        extra: dict[str, Any] = {}
        if self.configuration_set:
            extra["ConfigurationSetName"] = self.configuration_set
            extra["Tags"] = [{"Name": EVENT_ID_TAG, "Value": event.event_id}]
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
            refusal = permanent_refusal(error, self.sender)
            if refusal is not None:
                # Retrying would meet the same answer: the order's email ends here.
                sends.rejected(self.engine, event.event_id, attempt, refusal)
                log.warning("SES refused the confirmation for good", extra={"reason": refusal})
                return Outcome("rejected", reason=refusal)
            if _never_sent(error):
                # SES answered "not now" (throttled, our setup), or was never reached.
                sends.refused(self.engine, event.event_id, attempt, str(error))
            else:
                sends.unanswered(self.engine, event.event_id, attempt)
            raise
        except Exception:
            # No answer (a timeout, the connection dropped): it may have gone out. The
            # retry waits for SES's Send event before it sends again.
            sends.unanswered(self.engine, event.event_id, attempt)
            raise
        sends.accepted(self.engine, event.event_id, response["MessageId"])
        return _outcome(response["MessageId"])

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
