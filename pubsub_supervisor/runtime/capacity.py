"""What a consumer has in hand, and how many more messages it may receive (kombu's QoS)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from pubsub_supervisor.runtime.message import Message


class Capacity:
    """Messages in hand (with the time their visibility ends), receives in flight, and
    handlers started; pollers ask it for room, the heartbeat for what is about to expire."""

    def __init__(self, limit: int) -> None:
        #: Most messages in hand plus asked for at once.
        self.limit = limit
        self._changed = threading.Condition()
        #: Every message received and not yet acked or released, by receipt handle,
        #: with the monotonic time its visibility ends (the heartbeat extends it).
        self._in_hand: dict[str, tuple[Message, float]] = {}
        #: Messages asked for by receives in flight (counted against the limit).
        self._reserved = 0
        #: Receipt handles of messages whose handler has started (never released on stop).
        self._started: set[str] = set()
        self._active_events: set[str] = set()
        #: Receipt handles of messages handled and waiting for their delete: still in hand
        #: (the heartbeat extends them) but no longer taking room from the next receive.
        self._acking: set[str] = set()

    def free(self) -> int:
        """Messages that may be received now."""
        with self._changed:
            return self._free()

    def _free(self) -> int:
        return self.limit - self._working() - self._reserved

    def _working(self) -> int:
        return len(self._in_hand) - len(self._acking)

    def reserve(self, count: int, stopping: threading.Event) -> bool:
        """Wait until `count` more fit, and reserve them; False (nothing reserved) on stop."""
        with self._changed:
            while self._free() < count and not stopping.is_set():
                self._changed.wait(1)
            if stopping.is_set():
                return False
            self._reserved += count
            return True

    def unreserve(self, count: int) -> None:
        """A receive failed: its reservation is free again."""
        with self._changed:
            self._reserved -= count
            self._changed.notify_all()

    def received(self, messages: Iterable[Message], reserved: int, visible_until: float) -> None:
        """A receive of `reserved` returned these messages: they are in hand now."""
        with self._changed:
            self._reserved -= reserved
            count = 0
            for message in messages:
                self._in_hand[message.receipt_handle] = (message, visible_until)
                count += 1
            if count < reserved:
                self._changed.notify_all()

    def start(self, message: Message) -> bool:
        """Mark the message's handler started; False while its event is in progress already."""
        with self._changed:
            if message.event_id in self._active_events:
                return False
            self._active_events.add(message.event_id)
            self._started.add(message.receipt_handle)
            return True

    def finish(self, message: Message) -> None:
        """The handler ended: its event may be handled again."""
        with self._changed:
            self._active_events.discard(message.event_id)

    def handled(self, message: Message) -> None:
        """Its work is done and its delete is on its way: room for the next receive."""
        with self._changed:
            if message.receipt_handle in self._in_hand:
                self._acking.add(message.receipt_handle)
                self._changed.notify_all()

    def forget(self, messages: Iterable[Message]) -> None:
        """No longer in hand: the heartbeat stops extending them, pollers may take more."""
        with self._changed:
            for message in messages:
                self._in_hand.pop(message.receipt_handle, None)
                self._started.discard(message.receipt_handle)
                self._acking.discard(message.receipt_handle)
            self._changed.notify_all()

    def in_hand(self) -> int:
        """Messages received and not yet acked or released."""
        with self._changed:
            return len(self._in_hand)

    def working(self) -> int:
        """Messages in hand whose handling is not done yet (received, started or not, and
        not yet waiting for their delete): each may still end in a result or an ack."""
        with self._changed:
            return self._working()

    def unstarted(self) -> list[Message]:
        """Messages in hand whose handler has not started."""
        with self._changed:
            return [m for h, (m, _) in self._in_hand.items() if h not in self._started]

    def expiring(self, now: float, within: float, extend_to: float) -> list[Message]:
        """Messages whose visibility ends within `within` seconds; counted as visible until
        `extend_to` from now on (the caller extends them)."""
        with self._changed:
            due = [m for m, ends in self._in_hand.values() if ends - now < within]
            for message in due:
                self._in_hand[message.receipt_handle] = (message, extend_to)
            return due

    def wake(self) -> None:
        """Wake pollers waiting for room (on stop)."""
        with self._changed:
            self._changed.notify_all()
