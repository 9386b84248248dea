"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from pubsub_supervisor import db
from web import get_context

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The store and SNS/SQS are reachable; 503 names what is not."""
    context = get_context()
    checks: dict[str, str] = {}
    try:
        with db.read(context.engine) as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {error}"
    topology = context.settings.topology
    try:
        context.probe.sns.get_topic_attributes(TopicArn=context.topic_arns[topology.order_topic])
        checks["sns"] = "ok"
    except Exception as error:
        checks["sns"] = f"error: {error}"
    try:
        context.probe.sqs.get_queue_url(QueueName=topology.queue_for("web").name)
        checks["sqs"] = "ok"
    except Exception as error:
        checks["sqs"] = f"error: {error}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), (
        200 if ready else 503
    )
