"""The shared consumer runtime: it polls, dispatches, acknowledges and drains; it knows
nothing about orders."""

from pubsub_supervisor.runtime.consumer import (
    Consumer,
    ConsumerConfig,
    ConsumerStats,
    Handler,
    exit_after_drain,
    retry_delay,
)
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Middleware

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "Handler",
    "Message",
    "Middleware",
    "exit_after_drain",
    "retry_delay",
]
