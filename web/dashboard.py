"""What the dashboard and /metrics show about the pipeline: queues, consumers, outbox."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pubsub_supervisor import metrics
from pubsub_supervisor.events import utcnow
from pubsub_supervisor.queues import QueueDepth, QueueReader
from web import charts, store

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from sqlalchemy import Engine

    from pubsub_supervisor.settings import Settings

log = logging.getLogger(__name__)

#: Queue depths are read from SQS at most this often, however many pages poll.
DEPTH_CACHE_SECONDS = 1.0


class Dashboard:
    """The dashboard's read model: the pipeline's state, read for one web process."""

    def __init__(self, settings: Settings, engine: Engine, sqs: SQSClient) -> None:
        self.settings = settings
        self.engine = engine
        self.reader = QueueReader(sqs, settings.topology)
        self._lock = threading.Lock()
        self._depths: tuple[float, list[QueueDepth], str | None] = (0.0, [], None)

    def depths(self) -> tuple[list[QueueDepth], str | None]:
        """Every queue's depth (cached briefly) and the error if SQS did not answer."""
        with self._lock:
            read_at, rows, error = self._depths
            if time.monotonic() - read_at > DEPTH_CACHE_SECONDS:
                try:
                    rows, error = self.reader.depths(), None
                except Exception as failure:
                    log.warning("queue depths unavailable", extra={"error": str(failure)})
                    rows, error = [], str(failure)
                self._depths = (time.monotonic(), rows, error)
            return rows, error

    def snapshot(self) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON."""
        rows, error = self.depths()
        totals = metrics.consumer_totals(metrics.registry())
        queues = []
        for spec in self.settings.topology.queues:
            depth = next((asdict(r) for r in rows if r.name == spec.name), None)
            counts = totals.get(spec.name, metrics.ConsumerTotals())
            queues.append(
                {
                    "name": spec.name,
                    "consumer": spec.consumer,
                    "dlq_name": spec.dlq_name,
                    "depth": depth,
                    "counters": asdict(counts),
                }
            )
        summary = store.analytics(self.engine) or {
            "orders": 0,
            "revenue_cents": 0,
            "units": 0,
            "average_order_cents": 0,
            "units_by_sku": {},
            "orders_per_minute": [],
        }
        now = utcnow()
        return {
            "time": now.isoformat(),
            "queues": queues,
            "queues_error": error,
            "outbox_backlog": store.outbox_backlog(self.engine),
            "analytics": summary,
            "charts": {
                "units_by_sku": charts.units_by_sku(summary).to_json(),
                "orders_per_minute": charts.orders_per_minute(summary, now).to_json(),
            },
        }


class ScrapeCollector(Collector):
    """Gauges read when /metrics is scraped: queue depths and the outbox backlog."""

    def __init__(self, dashboard: Dashboard, program: str) -> None:
        self.dashboard = dashboard
        self.program = program

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read SQS and the outbox now."""
        rows, error = self.dashboard.depths()
        up = GaugeMetricFamily(
            "pubsub_sqs_up", "1 when SQS answered the last depth read.", labels=["program"]
        )
        up.add_metric([self.program], 0 if error else 1)
        yield up
        depth = GaugeMetricFamily(
            "pubsub_queue_messages",
            "Messages in a queue by state (SQS's approximate counts); DLQs included.",
            labels=["program", "queue", "state"],
        )
        for row in rows:
            depth.add_metric([self.program, row.name, "visible"], row.visible)
            depth.add_metric([self.program, row.name, "in_flight"], row.in_flight)
            depth.add_metric([self.program, row.name, "delayed"], row.delayed)
            depth.add_metric([self.program, row.dlq_name, "visible"], row.dlq_visible)
        yield depth
        backlog = GaugeMetricFamily(
            "pubsub_outbox_backlog",
            "Events committed but not yet published to SNS.",
            labels=["program"],
        )
        backlog.add_metric([self.program], store.outbox_backlog(self.dashboard.engine))
        yield backlog
