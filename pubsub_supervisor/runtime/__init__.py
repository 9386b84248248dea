"""The shared consumer runtime: it polls, dispatches, acknowledges and drains; it knows
nothing about orders.

`consumer` composes the parts: `capacity`, `poller`, `acks`, `heartbeat`, `visibility`,
`retries` (the retry and dead-letter policy) and `stats` (the counters, a middleware).
"""

from pubsub_supervisor.runtime.consumer import (
    Consumer,
    ConsumerConfig,
    Handler,
    exit_after_drain,
)
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Middleware
from pubsub_supervisor.runtime.retries import retry_delay
from pubsub_supervisor.runtime.stats import ConsumerStats

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
