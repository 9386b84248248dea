"""A stream of orders against the real web, and a ledger that checks what became of them:
every order processed, one confirmation email, its stock reserved once, counted once."""

from __future__ import annotations

import contextlib
import glob
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.stack import Api, wait_for

#: Every test order buys this (5,000 in stock: a run never runs out).
SKU = "CB-005"


def order_email(tag: str, n: int) -> str:
    """The recipient of order n of a stream: unique, so its emails can be counted."""
    return f"o{n}@{tag}.faults.example.com"


class OrderStream:
    """POSTs orders at a steady rate on a thread, like clients would, until stopped.

    A POST the web cannot take (it is restarting) is retried after a pause, as a client
    would; only 201 answers count as accepted.
    """

    def __init__(self, api: Api, tag: str, rate: float = 10.0) -> None:
        self.api = api
        self.tag = tag
        self.interval = 1.0 / rate
        self.accepted: list[str] = []
        self.refused = 0
        self._n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"orders-{tag}", daemon=True)

    def __enter__(self) -> OrderStream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for the POST in flight."""
        self._stop.set()
        self._thread.join(30)

    def post_one(self) -> bool:
        """POST the next order; True if it was accepted."""
        self._n += 1
        quantity = 1 + self._n % 3
        try:
            response = self.api.post_order(
                order_email(self.tag, self._n), [{"sku": SKU, "quantity": quantity}]
            )
        except requests.RequestException:
            self.refused += 1
            return False
        if response.status_code != 201:
            self.refused += 1
            return False
        self.accepted.append(response.json()["id"])
        return True

    def wait_accepted(self, count: int, timeout: float = 60) -> None:
        """Block until `count` orders were accepted."""
        wait_for(lambda: len(self.accepted) >= count, timeout, f"{count} accepted orders")

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self.post_one():
                self._stop.wait(0.2)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@dataclass
class Figures:
    """What became of one test's orders."""

    test: str
    sent: int = 0
    processed: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_lettered: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the run's summary."""
        extra = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (
            f"{self.test}: sent={self.sent} processed={self.processed} lost={self.lost} "
            f"duplicated={self.duplicated} dead_lettered={self.dead_lettered}{extra}"
        )


@dataclass(frozen=True)
class Baseline:
    """The stores' totals before a test, so its own effects can be told apart."""

    reserved: int
    counted: int


@dataclass(frozen=True)
class Order:
    """One order as the web stored it."""

    id: str
    email: str
    quantity: int
    services: dict[str, str]


def read_store(path: Path, query: str, *args: object) -> list[Any]:
    """Run a query on a program's SQLite store, read-only (the program keeps writing)."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute(query, args).fetchall()


class Ledger:
    """Reads the stack's stores and the emulator's sent mail to account for orders."""

    def __init__(self, data_dir: Path, emulator_url: str) -> None:
        self.data_dir = data_dir
        self.emulator_url = emulator_url
        #: Mail the emulator sent before it lost its state (see `keep_sent_mail`).
        self.kept_mail: dict[str, list[str]] = {}
        #: Ids of mail the emulator was saving when it was frozen (an unreadable file).
        self.half_kept_mail: set[str] = set()

    def baseline(self) -> Baseline:
        """Totals now."""
        return Baseline(reserved=self.reserved(), counted=self.counted())

    def reserved(self) -> int:
        """Units of the test SKU the inventory store has reserved."""
        rows = read_store(
            self.data_dir / "inventory.sqlite3", "SELECT reserved FROM stock WHERE sku=?", SKU
        )
        return int(rows[0][0]) if rows else 0

    def counted(self) -> int:
        """Orders the analytics store has counted."""
        rows = read_store(
            self.data_dir / "analytics.sqlite3", "SELECT orders FROM totals WHERE id=1"
        )
        return int(rows[0][0]) if rows else 0

    def orders(self, tag: str) -> list[Order]:
        """Every order of a stream the web stored (accepted or not: a POST whose answer
        was lost may still have been stored)."""
        web = self.data_dir / "web.sqlite3"
        rows = read_store(
            web,
            "SELECT o.id, o.customer_email, SUM(i.quantity) FROM orders o "
            "JOIN order_items i ON i.order_id = o.id WHERE o.customer_email LIKE ? GROUP BY o.id",
            f"%@{tag}.faults.example.com",
        )
        statuses: dict[str, dict[str, str]] = {}
        for order_id, service, status in read_store(
            web,
            "SELECT s.order_id, s.service, s.status FROM order_services s JOIN orders o "
            "ON o.id = s.order_id WHERE o.customer_email LIKE ?",
            f"%@{tag}.faults.example.com",
        ):
            statuses.setdefault(order_id, {})[service] = status
        return [Order(i, e, int(q), statuses.get(i, {})) for i, e, q in rows]

    def settled(self, tag: str) -> bool:
        """True when no order of the stream has a service still pending."""
        return all("pending" not in o.services.values() for o in self.orders(tag))

    def sent_mail(self) -> dict[str, list[str]]:
        """SES message ids by recipient: what the emulator sent, and what it had sent
        before it lost its state."""
        messages = requests.get(f"{self.emulator_url}/_aws/ses", timeout=30).json()["messages"]
        sent: dict[str, list[str]] = {k: list(v) for k, v in self.kept_mail.items()}
        for message_id in self.half_kept_mail:
            # Frozen while it saved this mail: SES had taken it. The email service knows
            # whom it was for only if SES's Send event for it reached it in time.
            for to in self._recipients_of(message_id):
                if message_id not in sent.get(to, []):
                    sent.setdefault(to, []).append(message_id)
        for message in messages:
            for to in message["Destination"]["ToAddresses"]:
                if message["Id"] not in sent.get(to, []):
                    sent.setdefault(to, []).append(message["Id"])
        return sent

    def _recipients_of(self, ses_message_id: str) -> list[str]:
        orders = read_store(
            self.data_dir / "email.sqlite3",
            "SELECT order_id FROM email_sends WHERE ses_message_id = ?",
            ses_message_id,
        )
        return [
            to
            for (order_id,) in orders
            for (to,) in read_store(
                self.data_dir / "web.sqlite3",
                "SELECT customer_email FROM orders WHERE id = ?",
                order_id,
            )
        ]

    def keep_sent_mail(self, state_dir: Path) -> int:
        """Read the mail a stopped emulator had sent from its files (call it after the
        emulator is frozen or dead: a graceful stop deletes them); returns how many."""
        kept = 0
        for path in glob.glob(str(state_dir / "**" / "ses" / "*.json"), recursive=True):
            try:
                message = json.loads(Path(path).read_text())
            except ValueError:
                # Frozen in the middle of writing it: see sent_mail.
                self.half_kept_mail.add(Path(path).stem)
                continue
            for to in message["Destination"]["ToAddresses"]:
                ids = self.kept_mail.setdefault(to, [])
                if message["Id"] not in ids:
                    ids.append(message["Id"])
                    kept += 1
        return kept

    def account(
        self, test: str, tag: str, accepted: list[str], baseline: Baseline, dead_lettered: int = 0
    ) -> Figures:
        """Figures of a stream once it has settled (or its time ran out)."""
        orders = self.orders(tag)
        mail = self.sent_mail()
        emails = Counter({o.id: len(mail.get(o.email, [])) for o in orders})
        processed = [o for o in orders if set(o.services.values()) == {"processed"}]
        stored = {o.id for o in orders}
        reserved = self.reserved() - baseline.reserved
        counted = self.counted() - baseline.counted
        expected_units = sum(
            o.quantity for o in orders if o.services.get("inventory") == "processed"
        )
        counted_expected = sum(1 for o in orders if o.services.get("analytics") == "processed")
        repeats = {
            "emails": sum(n - 1 for n in emails.values() if n > 1),
            "units": max(0, reserved - expected_units),
            "counts": max(0, counted - counted_expected),
        }
        figures = Figures(
            test=test,
            sent=len(accepted),
            processed=len(processed),
            # Accepted but never stored, or stored and not processed by every service.
            lost=len(set(accepted) - stored) + len(orders) - len(processed),
            duplicated=sum(repeats.values()),
            dead_lettered=dead_lettered,
        )
        figures.notes = {
            "stored": len(orders),
            "without_email": sum(1 for n in emails.values() if n == 0),
            "units_reserved": f"{reserved}/{expected_units}",
            "orders_counted": f"{counted}/{counted_expected}",
            "repeated": repeats,
        }
        return figures

    def wait_settled(self, tag: str, timeout: float) -> float:
        """Wait until every order of the stream left pending; returns the seconds it took."""
        started = time.monotonic()
        with contextlib.suppress(AssertionError):
            wait_for(lambda: self.settled(tag), timeout, f"orders of {tag} to settle", 0.5)
        return round(time.monotonic() - started, 1)


def dlq_depths(sqs: Any, names: Iterator[str] | list[str]) -> dict[str, int]:
    """Messages in each named queue (visible and in flight)."""
    depths: dict[str, int] = {}
    for name in names:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[name] = int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )
    return depths
