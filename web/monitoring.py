"""GET /metrics: the one Prometheus scrape target of the whole stack."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pubsub_supervisor import metrics
from web import get_context
from web.dashboard import ScrapeCollector

bp = Blueprint("monitoring", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Every program's metrics, plus queue depths and the outbox backlog read now."""
    context = get_context()
    collector = ScrapeCollector(context.dashboard, context.settings.program_name)
    body = generate_latest(metrics.registry([collector]))
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})
