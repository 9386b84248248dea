"""Hooks into the consumer's life cycle; the runtime calls them and survives their errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pubsub_supervisor.runtime.message import Message


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
