"""The outbox relay: publishes committed events to SNS in batches, retrying with backoff.

Any number of relays may share one outbox (several web_worker instances on PostgreSQL):
each claims its batch atomically (FOR UPDATE SKIP LOCKED; on SQLite the write lock) with a
lease, so every event is published by one relay, and a dead relay's rows are taken over
once its lease ends.

The web's own processes publish each event right after its commit (`CommitPublisher`),
through the same claims, so an order reaches SNS within milliseconds; the relay's poll
publishes whatever they did not (a crash between commit and publish, SNS down).

It also publishes again the event of an order some service has not reported on long
after publication: the broker may have lost the message (an emulator restarted without
its state, a purged queue). The services are idempotent, so a second copy is harmless.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, or_, select, update

from pubsub_supervisor import db, logs, tracing
from pubsub_supervisor.events import utcnow
from pubsub_supervisor.retry import backoff
from web.schema import order_services, outbox

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

#: Largest PublishBatch SNS accepts.
PUBLISH_BATCH = 10
#: Retry delays grow 1 s, 2 s, 4 s ... up to this: once SNS is back, the backlog goes
#: out within it.
MAX_BACKOFF_SECONDS = 10
#: Most events one republish pass sends (the next pass takes the rest).
REPUBLISH_LIMIT = 500


class OutboxRelay:
    """Moves pending outbox rows to SNS; safe to stop at any point (at-least-once)."""

    def __init__(
        self,
        engine: Engine,
        sns: SNSClient,
        topic_arns: Mapping[str, str],
        *,
        poll_interval: float = 0.1,
        claim_seconds: int = 30,
        on_published: Callable[[int], None] | None = None,
        on_failed: Callable[[int], None] | None = None,
        republish_after: float = 0,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.sns = sns
        self.topic_arns = dict(topic_arns)
        self.poll_interval = poll_interval
        self.claim_seconds = claim_seconds
        #: Written into the rows this relay claims (which host and process holds them).
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_published = on_published
        self.on_failed = on_failed
        #: Seconds after publication an order may stay pending before its event is
        #: published again (0: never).
        self.republish_after = republish_after
        #: Messages still waiting in the consumers' queues: while there are any, a
        #: pending order may simply be queued behind them, so nothing is republished.
        self.backlog = backlog
        self.republished = 0
        self._stopping = threading.Event()
        self._failures = 0
        self._next_sweep = time.monotonic() + republish_after

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run()`."""
        self._stopping.set()

    def run(self) -> None:
        """Publish until stopped; poll quickly while there is work, back off while SNS fails."""
        log.info("outbox relay started")
        while not self._stopping.is_set():
            try:
                published = self.relay_once()
                self._maybe_sweep()
            except Exception as error:
                # The store itself failed (locked, disk): wait and try again.
                log.warning("outbox relay pass failed", extra={"error": str(error)})
                published = 0
                self._failures += 1
            if published == PUBLISH_BATCH:
                continue
            delay = self.poll_interval if self._failures == 0 else self._backoff()
            self._stopping.wait(delay)
        log.info("outbox relay stopped")

    def _backoff(self) -> float:
        return backoff(self._failures, 1, MAX_BACKOFF_SECONDS)

    def pending(self) -> int:
        """Rows not yet published (the backlog)."""
        with db.read(self.engine) as conn:
            query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return int(conn.execute(query).scalar_one())

    def _maybe_sweep(self) -> None:
        if not self.republish_after or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + max(1.0, self.republish_after / 4)
        if self.backlog is not None:
            try:
                waiting = self.backlog()
            except Exception as error:
                log.warning("cannot read the queues' backlog", extra={"error": str(error)})
                return
            if waiting:
                return
        self.republish_stale()

    def republish_stale(self) -> int:
        """Publish again the events of orders still pending `republish_after` seconds
        after their last publication; returns how many were published."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.republish_after)
        pending_orders = select(order_services.c.order_id).where(
            order_services.c.status == "pending"
        )
        with db.write(self.engine) as conn:
            stale = (
                select(outbox.c.seq)
                .where(outbox.c.published_at < cutoff)
                .where(outbox.c.aggregate_id.in_(pending_orders))
                .order_by(outbox.c.seq)
                .limit(REPUBLISH_LIMIT)
                .with_for_update(skip_locked=True)
            )
            seqs = list(conn.execute(stale).scalars())
            # Moving published_at on, in the same transaction, keeps the other relays'
            # sweeps from sending the same events again.
            if seqs:
                conn.execute(update(outbox).where(outbox.c.seq.in_(seqs)).values(published_at=now))
            rows = list(
                conn.execute(select(outbox).where(outbox.c.seq.in_(seqs)).order_by(outbox.c.seq))
            )
        if not rows:
            return 0
        log.warning(
            "republishing events of orders still pending",
            extra={"count": len(rows), "pending_for_seconds": self.republish_after},
        )
        published = 0
        for start in range(0, len(rows), PUBLISH_BATCH):
            chunk = rows[start : start + PUBLISH_BATCH]
            by_topic: dict[str, list[Any]] = {}
            for row in chunk:
                by_topic.setdefault(row.topic, []).append(row)
            for topic, topic_rows in by_topic.items():
                published += self._publish(topic, topic_rows)
        self.republished += published
        return published

    def claim(self) -> list[Any]:
        """Claim up to one batch of due rows nobody holds; returns them, oldest first."""
        now = utcnow()
        due = (
            select(outbox.c.seq)
            .where(outbox.c.published_at.is_(None))
            .where(outbox.c.next_attempt_at <= now)
            .where(or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now))
            .order_by(outbox.c.seq)
        )
        # An idle relay only reads: it takes no write lock (SQLite) and locks no rows.
        with db.read(self.engine) as conn:
            if conn.execute(due.limit(1)).first() is None:
                return []
        with db.write(self.engine) as conn:
            # PostgreSQL: rows another relay is claiming right now are skipped, not waited
            # for. SQLite has no row locks: its write lock serializes claims.
            locked = due.limit(PUBLISH_BATCH).with_for_update(skip_locked=True)
            seqs = list(conn.execute(locked).scalars())
            if not seqs:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.seq.in_(seqs))
                .values(
                    claimed_by=self.name,
                    claimed_until=now + timedelta(seconds=self.claim_seconds),
                )
            )
            return list(
                conn.execute(select(outbox).where(outbox.c.seq.in_(seqs)).order_by(outbox.c.seq))
            )

    def relay_once(self) -> int:
        """Publish up to one batch of due rows; returns how many were published."""
        rows = self.claim()
        if not rows:
            return 0
        by_topic: dict[str, list[Any]] = {}
        for row in rows:
            by_topic.setdefault(row.topic, []).append(row)
        published = 0
        for topic, topic_rows in by_topic.items():
            published += self._publish(topic, topic_rows)
        return published

    def _publish(self, topic: str, rows: list[Any]) -> int:
        entries: list[Any] = [
            {
                "Id": str(row.seq),
                "Message": row.body,
                "MessageAttributes": json.loads(row.attributes),
            }
            for row in rows
        ]
        try:
            with tracing.publishing(self.topic_arns[topic], entries):
                response = self.sns.publish_batch(
                    TopicArn=self.topic_arns[topic], PublishBatchRequestEntries=entries
                )
        except Exception as error:
            self._failures += 1
            self._mark_failed({row.seq: str(error) for row in rows}, rows)
            log.warning(
                "publish failed; events stay in the outbox",
                extra={"error": str(error), "count": len(rows), "retry_in": self._backoff()},
            )
            _log_each(rows, "event not published yet", error=str(error))
            return 0
        failed = {int(f["Id"]): f.get("Message", f.get("Code", "")) for f in response["Failed"]}
        ok = [row.seq for row in rows if row.seq not in failed]
        if ok:
            with db.write(self.engine) as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.seq.in_(ok))
                    .values(published_at=utcnow(), claimed_until=None)
                )
            self._failures = 0
            if self.on_published:
                self.on_published(len(ok))
            _log_each([row for row in rows if row.seq not in failed], "event published")
        if failed:
            self._failures += 1
            self._mark_failed(failed, rows)
            for row in rows:
                if row.seq in failed:
                    _log_each([row], "event refused by SNS", error=failed[row.seq])
        return len(ok)

    def _mark_failed(self, errors: Mapping[int, str], rows: list[Any]) -> None:
        if self.on_failed:
            self.on_failed(len(errors))
        now = utcnow()
        with db.write(self.engine) as conn:
            for row in rows:
                if row.seq in errors:
                    delay = backoff(row.attempts + 1, 1, MAX_BACKOFF_SECONDS)
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.seq == row.seq)
                        .values(
                            attempts=row.attempts + 1,
                            next_attempt_at=now + timedelta(seconds=delay),
                            last_error=errors[row.seq][:500],
                            claimed_until=None,
                        )
                    )


class CommitPublisher:
    """Publishes committed events from the process that committed them, at once: `notify()`
    after a commit wakes a thread that runs the relay's claim-and-publish until nothing is
    due (the claims keep each event to one publisher)."""

    def __init__(self, make_relay: Callable[[], OutboxRelay]) -> None:
        #: Built on first use, in the thread: after gunicorn's fork, and an unreachable
        #: endpoint at start-up only delays publishing to the relay's poll.
        self.make_relay = make_relay
        self._relay: OutboxRelay | None = None
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def notify(self) -> None:
        """An event was committed: publish what is due soon (never blocks, never raises)."""
        with self._lock:
            # A thread does not survive a fork: each gunicorn worker starts its own.
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="commit-publisher", daemon=True
                )
                self._thread.start()
                # A worker that exits (gunicorn's graceful stop) first publishes what it
                # committed, instead of leaving claimed rows to the end of their lease.
                atexit.register(self.close)
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is due, then end the thread (within `timeout`)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._closing.set()
        self._wake.set()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            # Read before the pass: close() comes after the commits it must see out, so a
            # pass begun before close() may have missed them, and `close()` set the wake-up
            # again for one more pass.
            closing = self._closing.is_set()
            try:
                self.publish_due()
            except Exception as error:
                # The relay's poll publishes it instead; nothing is lost.
                log.warning("publish after commit failed", extra={"error": str(error)})
            if closing:
                return

    def publish_due(self) -> int:
        """Publish what is due, one batch after another; returns how many were published."""
        if self._relay is None:
            self._relay = self.make_relay()
        total = 0
        while True:
            published = self._relay.relay_once()
            total += published
            # A failed publish left its rows to the relay's backoff; a short batch means
            # nothing more is due.
            if published < PUBLISH_BATCH:
                return total


def _log_each(rows: list[Any], message: str, **extra: str) -> None:
    """One line per event, with the ids that tie it to its order and its request."""
    level = logging.WARNING if extra else logging.INFO
    for row in rows:
        trace = tracing.stored_trace_id(json.loads(row.attributes))
        with logs.bound(event_id=row.event_id, order_id=row.aggregate_id, trace_id=trace):
            log.log(level, message, extra={"attempts": row.attempts, **extra})
