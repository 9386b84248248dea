"""The web app: accepts orders, shows their progress, and relays events to SNS."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, make_response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from pubsub_supervisor import logs, metrics, tracing
from pubsub_supervisor.settings import Settings
from web.context import WebContext

log = logging.getLogger(__name__)

#: Largest request body accepted (an order is a few hundred bytes).
MAX_CONTENT_LENGTH = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; tests pass their own settings."""
    settings = settings or Settings()
    metrics.prepare()
    # Here, not at import: gunicorn builds the app in each worker, after the fork, where
    # the exporter's thread must start.
    tracing.init(settings.program_name)
    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=settings.web_templates_auto_reload,
    )
    # "//api//orders" is no route of ours, not a redirect: a redirect copies the client's
    # query string into its Location header, where a stray CR or LF cannot go.
    app.url_map.merge_slashes = False
    context = WebContext(settings)
    app.extensions["pubsub"] = context
    context.engine  # noqa: B018 - create the schema before the first request

    from web import access, api, health, limits, monitoring, pages, security

    # Request hooks run in this order: the request's span, trace id, operator guard, CSRF,
    # rate limits.
    tracing.instrument_app(app)
    _install_request_context(app, settings.program_name)
    access.init_app(app, settings)
    security.init_app(app, settings)
    # The JSON API accepts only application/json, which a cross-site form cannot send.
    security.csrf.exempt(api.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(monitoring.bp)
    app.register_blueprint(pages.bp)
    limits.init_app(app, settings)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


#: Paths whose errors are JSON (machines call them); every other path gets a page.
_JSON_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")


def _http_error(error: HTTPException) -> Response | tuple[Response, int]:
    from web import api

    if error.code == 429:
        error.description = (
            f"Too many orders from your address ({error.description}): wait a little, "
            "then try again."
        )
    if request.path.startswith(_JSON_PATHS):
        return api.http_error(error)
    response = make_response(render_template("error.html", error=error), error.code or 500)
    # Keep the exception's own headers (a 401's WWW-Authenticate, a 405's Allow).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected_error(error: Exception) -> Response | tuple[Response, int]:
    """Any other failure: the detail goes to the log, the client gets the trace id only."""
    trace_id = g.get("trace_id", "")
    log.error("unexpected error", exc_info=error, extra={"path": request.path})
    generic = InternalServerError(
        description=f"Something went wrong on our side; quote trace id {trace_id} when "
        "you report it."
    )
    return _http_error(generic)


def get_context() -> WebContext:
    """The WebContext of the current app."""
    from flask import current_app

    context: WebContext = current_app.extensions["pubsub"]
    return context


#: Methods that keep their own metrics label; any other is counted as "other".
METRIC_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})

#: Requests not worth a log line each (probes, scrapes, static files).
_QUIET = ("/healthz", "/readyz", "/metrics", "/static/")


def _install_request_context(app: Flask, program: str) -> None:
    @app.before_request
    def _start() -> None:
        # The request's span (a new trace, or the caller's `traceparent` continued): its
        # trace id travels with the order's events into every service's logs.
        g.trace_id = tracing.current_trace_id()
        g.started = time.perf_counter()
        g.log_scope = logs.bound(trace_id=g.trace_id)
        g.log_scope.__enter__()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Trace-Id"] = g.get("trace_id", "")
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        # The route, not the path: one series per endpoint, whatever the ids in the URL.
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # Clients choose the method: a fixed set of labels, or /metrics grows without bound.
        method = request.method if request.method in METRIC_METHODS else "other"
        metrics.HTTP_REQUESTS.labels(program, method, endpoint, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(program, method, endpoint).observe(seconds)
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round(seconds * 1000, 2),
        }
        if not request.path.startswith(_QUIET):
            log.info("request", extra=extra)
        return response

    @app.teardown_request
    def _end(_error: BaseException | None) -> None:
        scope = g.pop("log_scope", None)
        if scope is not None:
            scope.__exit__(None, None, None)
