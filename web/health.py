"""Liveness and readiness probes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from pubsub_supervisor import db
from web import access, get_context

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify({"status": "ok"})


def _check(name: str, probe: Callable[[], object], checks: dict[str, str]) -> None:
    try:
        probe()
        checks[name] = "ok"
    except Exception as error:
        log.warning("readiness check %s failed", name, exc_info=error)
        checks[name] = f"error: {error}"


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The store and SNS/SQS are reachable; 503 when one is not.

    Operators see each check and its error; anyone else only the status (AWS error text
    can name the role ARN and the account id).
    """
    context = get_context()
    topology = context.settings.topology
    checks: dict[str, str] = {}

    def database() -> None:
        with db.read(context.engine) as conn:
            conn.execute(text("SELECT 1"))

    _check("database", database, checks)
    _check(
        "sns",
        lambda: context.readiness.sns.get_topic_attributes(
            TopicArn=context.topic_arns[topology.order_topic]
        ),
        checks,
    )
    _check(
        "sqs",
        lambda: context.readiness.sqs.get_queue_url(QueueName=topology.queue_for("web").name),
        checks,
    )
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready"}
    if access.is_operator():
        body["checks"] = checks
    return jsonify(body), 200 if ready else 503
