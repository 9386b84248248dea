"""The shared consumer runtime: it polls, dispatches, acknowledges and drains; it knows
nothing about orders."""

from services.runtime.consumer import (
    Consumer,
    ConsumerConfig,
    ConsumerStats,
    Handler,
    retry_delay,
)
from services.runtime.message import Message
from services.runtime.middleware import Middleware

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "Handler",
    "Message",
    "Middleware",
    "retry_delay",
]
