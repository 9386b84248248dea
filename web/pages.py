"""The HTML pages: place an order, list orders, follow one, watch the pipeline, redrive DLQs.

Every page works without JavaScript; small scripts in /static make the order page and
the dashboard update in place.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from pubsub_supervisor import dlq
from pubsub_supervisor.catalog import Product
from pubsub_supervisor.settings import SERVICE_NAMES
from pubsub_supervisor.topology import QueueSpec
from web import access, get_context, limits, store
from web.api import is_order_id
from web.validation import MAX_CURSOR, FieldError, parse_int, parse_quantity, validate_order

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

PAGE_SIZE = 25
#: Messages shown per dead-letter queue (a bounded read: see dlq.list_dead_letters).
DLQ_PAGE = dlq.PAGE_SIZE


@bp.app_template_filter("money")
def money(cents: int | float | None) -> str:
    """1234 -> "$12.34"."""
    return f"${(cents or 0) / 100:,.2f}"


@bp.app_template_filter("clock")
def clock(iso: str | None) -> str:
    """An ISO time as HH:MM:SS (UTC), or a dash."""
    return datetime.fromisoformat(iso).strftime("%H:%M:%S") if iso else "-"


@bp.app_template_filter("elapsed")
def elapsed(iso: str | None, since: str | None) -> str:
    """Seconds from `since` to `iso`, as "+1.23 s"."""
    if not iso or not since:
        return ""
    seconds = (datetime.fromisoformat(iso) - datetime.fromisoformat(since)).total_seconds()
    return f"+{max(seconds, 0):.2f} s"


def _form_errors(
    email: str, items: list[dict[str, Any]], errors: list[FieldError]
) -> dict[str, str]:
    """The API's validation errors, keyed by the form field to show them beside."""
    by_field: dict[str, str] = {}
    for error in errors:
        name, message = error["field"], error["message"]
        if name == "customer_email":
            by_field.setdefault("customer_email", message if email else "Enter an email address")
        elif name == "items":
            by_field.setdefault(
                "items",
                message if items else "Choose at least one product (quantity 1 or more)",
            )
        elif name.startswith("items[") and "]" in name:
            index = int(name[len("items[") : name.index("]")])
            by_field.setdefault(f"qty-{items[index]['sku']}", message)
        else:
            by_field.setdefault("form", f"{name}: {message}")
    return by_field


def _read_form(catalog: dict[str, Product]) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    """The email, the chosen items, and errors of quantities that are not whole numbers."""
    email = request.form.get("customer_email", "").strip()
    items: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for sku in catalog:
        raw = request.form.get(f"qty-{sku}", "").strip()
        if not raw:
            continue
        quantity = parse_quantity(raw)
        if quantity is None:
            errors[f"qty-{sku}"] = "Enter a whole number"
            continue
        if quantity != 0:
            items.append({"sku": sku, "quantity": quantity})
    return email, items, errors


def _render_form(
    values: dict[str, str], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    context = get_context()
    products = store.products(context.engine, context.catalog)
    total = 0
    for product in products:
        quantity = parse_quantity(values.get(f"qty-{product['sku']}", ""))
        if quantity is not None and quantity > 0:
            total += quantity * product["price_cents"]
    html = render_template(
        "order_form.html", products=products, values=values, errors=errors, total=total
    )
    return html, status


def _aws_failure(error: Exception) -> str:
    """What a page says of an AWS failure: the detail for operators, the trace id to all."""
    trace = f"(trace id {g.get('trace_id', '')}; the web's log has the detail)"
    # AWS error text can name the role ARN and the account id.
    return f"{error} {trace}" if access.is_operator() else f"an AWS call failed {trace}"


@bp.get("/")
def order_form() -> tuple[str, int]:
    """The place-order form with the catalog, prices and stock."""
    return _render_form({}, {})


@bp.post("/orders")
def place_order() -> Response | tuple[str, int]:
    """Accept the form: on success redirect to the order; otherwise show errors by field."""
    context = get_context()
    email, items, errors = _read_form(context.catalog)
    order, invalid = validate_order(
        {"customer_email": email, "items": items},
        context.catalog,
        limits.order_limits(context.settings),
    )
    if errors or order is None:
        found = _form_errors(email, items, invalid)
        if errors:  # a quantity that is not a number was left out of `items`
            found.pop("items", None)
        return _render_form(request.form.to_dict(), {**found, **errors}, 422)
    refusal = limits.recipient_refusal(context.engine, str(order.customer_email), context.settings)
    if refusal is not None:
        return _render_form(request.form.to_dict(), {"customer_email": refusal}, 429)
    event = store.place_order(context.engine, order, context.catalog, g.trace_id)
    flash("Order placed: follow it through the pipeline below.", "success")
    return redirect(url_for("pages.order_page", order_id=event.order_id), 303)


@bp.get("/orders")
def order_list() -> str:
    """Newest orders first, a page at a time."""
    raw = request.args.get("before")
    before = parse_int(raw, 1, MAX_CURSOR) if raw is not None else None
    if raw is not None and before is None:
        abort(400, "?before= must be the cursor of the page's 'Older' link.")
    orders, next_cursor = store.list_orders(get_context().engine, PAGE_SIZE, before)
    return render_template(
        "orders.html", orders=orders, next_cursor=next_cursor, services=SERVICE_NAMES
    )


@bp.get("/orders/<order_id>")
def order_page(order_id: str) -> str:
    """One order with a timeline of each service's status.

    :raise 404: no order has this id.
    """
    order = store.get_order(get_context().engine, order_id) if is_order_id(order_id) else None
    if order is None:
        abort(404, f"Order {order_id} does not exist.")
    return render_template("order.html", order=order, services=SERVICE_NAMES)


@bp.get("/pipeline")
def dashboard() -> str:
    """Queues, consumers, outbox and analytics at a glance."""
    return render_template("dashboard.html", pipeline=get_context().dashboard.snapshot())


@bp.get("/dlq")
def dead_letters() -> str:
    """Each dead-letter queue with its messages.

    Every DLQ is read, not only those a queue depth calls non-empty: SQS's counts are
    approximate (and cached here for a second), and a page that says "Empty." over a
    message an operator is looking for is worse than one that takes a long poll to
    load. The queues are read side by side, so the page costs one poll, not four. Each
    read is bounded (DLQ_PAGE messages, a few receives) and releases what it saw.
    """
    dashboard = get_context().dashboard
    specs = list(get_context().settings.topology.queues)

    def read(spec: QueueSpec) -> tuple[dlq.DeadLetterPage, Exception | None]:
        try:
            return dlq.list_dead_letters(dashboard.reader.sqs, spec, DLQ_PAGE), None
        except Exception as failure:
            return dlq.DeadLetterPage(dlq=spec.dlq_name), failure

    with ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
        results = list(pool.map(read, specs))
    queues = []
    for spec, (page, failure) in zip(specs, results, strict=True):
        error = None
        if failure is not None:
            # Here, not in the pool's threads: the log line and the text need the request.
            log.warning("could not read %s", spec.dlq_name, exc_info=failure)
            error = _aws_failure(failure)
        queues.append(
            {
                "spec": spec,
                "letters": page.letters,
                "more": page.more,
                "total": page.approximate_count
                if page.approximate_count is not None
                else len(page.letters),
                "error": error,
            }
        )
    return render_template("dlq.html", queues=queues)


@bp.post("/dlq/redrive")
def redrive() -> Response:
    """Move one message, or every message, of a DLQ back to its queue.

    :raise 400: the form names no dead-letter queue of this stack.
    """
    dashboard = get_context().dashboard
    name = request.form.get("dlq", "")
    message_id = request.form.get("message_id") or None
    spec = next((q for q in get_context().settings.topology.queues if q.dlq_name == name), None)
    if spec is None:
        abort(400, f"{name!r} is not a dead-letter queue of this stack.")
    try:
        result = dlq.redrive(
            dashboard.reader.sqs, spec, message_ids={message_id} if message_id else None
        )
    except Exception as error:
        # SQS unreachable, or a role without the redrive permissions: say which.
        log.warning("could not redrive from %s", name, exc_info=error)
        flash(f"Could not redrive from {name}: {_aws_failure(error)}", "warning")
        return redirect(url_for("pages.dead_letters"), 303)
    if result.failed:
        flash(f"{result.failed} message(s) could not be moved; they stay in {name}.", "warning")
    elif message_id and not result.moved:
        flash(f"Message {message_id} is no longer in {name}.", "warning")
    else:
        moved = result.moved
        flash(f"Redrove {moved} message{'s' if moved != 1 else ''} from {name}.", "success")
    return redirect(url_for("pages.dead_letters"), 303)
