"""Hooks into the consumer's life cycle; the runtime calls them and survives their errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pubsub_supervisor.runtime.message import Message

log = logging.getLogger(__name__)


class Middleware:
    """No-op base: override the hooks you need (metrics, tracing, ...)."""

    def after_receive(self, queue: str, count: int) -> None:
        """A ReceiveMessage call returned `count` messages."""

    def before_process(self, message: Message) -> None:
        """A worker is about to call the handler."""

    def after_process(self, message: Message, seconds: float, error: BaseException | None) -> None:
        """The handler returned (error is None) or raised."""

    def after_retry(self, message: Message, delay: int, reason: str) -> None:
        """The message goes back to the queue, visible again after `delay` seconds."""

    def after_dead_letter(self, message: Message, reason: str) -> None:
        """The message was moved to the dead-letter queue."""

    def after_ack(self, message: Message) -> None:
        """The message was deleted after success."""

    def after_release(self, messages: Sequence[Message]) -> None:
        """Messages received but not started were handed back for immediate redelivery."""

    def after_extend(self, messages: Sequence[Message]) -> None:
        """The heartbeat extended the visibility of messages still in hand."""


class Hooks:
    """Calls one hook on every middleware in order; a failing middleware is logged and skipped."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = tuple(middleware)

    def emit(self, hook: str, *args: Any) -> None:
        """Call `hook(*args)` on each middleware."""
        for middleware in self.middleware:
            try:
                getattr(middleware, hook)(*args)
            except Exception:
                log.exception("middleware hook failed", extra={"hook": hook})
