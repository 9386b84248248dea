"""`pubsub`: the operator's command line (also reachable through make)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from pubsub_supervisor.aws import arns_for, make_clients
from pubsub_supervisor.catalog import load_catalog
from pubsub_supervisor.events import OrderCreated, OrderItem, encode, message_attributes, new_id
from pubsub_supervisor.queues import QueueReader
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import apply_topology

#: Exit codes, named so scripts can tell failures apart.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
#: `status --check`: every queue answered, but a dead-letter queue holds messages.
EXIT_DEAD_LETTERS = 3

#: The sample order: a couple of catalog products, one of each.
SAMPLE_SKUS = ("KB-001", "MS-002")
SAMPLE_EMAIL = "sample@example.com"

Command = Callable[[argparse.Namespace, Settings], int]


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    """Create or update every topic, queue, subscription and the SES sender identity."""
    clients = make_clients(settings)
    topology = settings.topology
    where = settings.aws_endpoint_url or f"AWS ({settings.aws_region})"
    print(f"{'Planning' if args.dry_run else 'Applying'} the topology at {where}")
    changes = apply_topology(
        topology,
        sns=clients.sns,
        sqs=clients.sqs,
        ses=clients.ses,
        arns=arns_for(clients, settings.aws_region),
        dry_run=args.dry_run,
        progress=lambda line: print(("would " if args.dry_run else "") + line),
    )
    if not changes:
        print("Nothing to change: every resource is as defined.")
    else:
        verb = "would change" if args.dry_run else "changed"
        print(f"{len(changes)} resource(s) {verb}.")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show every queue and its dead-letter queue: messages visible, in flight, dead."""
    reader = QueueReader(make_clients(settings, probe=True).sqs, settings.topology)
    rows = reader.depths()
    where = settings.aws_endpoint_url or f"AWS ({settings.aws_region})"
    print(f"Queues at {where}")
    header = ("QUEUE", "CONSUMER", "VISIBLE", "IN FLIGHT", "DELAYED", "DLQ", "DLQ MESSAGES")
    table = [header] + [
        (
            r.name,
            r.consumer,
            str(r.visible),
            str(r.in_flight),
            str(r.delayed),
            r.dlq_name,
            str(r.dlq_visible),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = {2, 3, 4, 6}
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
    dead = sum(r.dlq_visible for r in rows)
    if dead:
        print(f"{dead} message(s) in dead-letter queues: inspect and redrive them at /dlq.")
        return EXIT_DEAD_LETTERS if args.check else EXIT_OK
    print("Dead-letter queues are empty.")
    return EXIT_OK


def _web_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
    return f"http://{host}:{settings.web_port}"


def _sample_items(settings: Settings) -> list[dict[str, Any]]:
    catalog = load_catalog(settings.catalog_path)
    skus = [sku for sku in SAMPLE_SKUS if sku in catalog] or list(catalog)[:1]
    return [{"sku": sku, "quantity": 1} for sku in skus]


def _http_json(url: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """GET (or POST `body` as JSON); returns the parsed body and the response headers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own web
        url,
        data=data,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read()), response.headers


def cmd_publish_sample(args: argparse.Namespace, settings: Settings) -> int:
    """Place a sample order through the web (or publish its event straight to SNS)."""
    items = _sample_items(settings)
    if args.direct:
        return _publish_direct(args, settings, items)
    base = (args.url or _web_url(settings)).rstrip("/")
    try:
        order, headers = _http_json(
            f"{base}/api/orders", {"customer_email": args.email, "items": items}
        )
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        print(
            f"pubsub publish-sample: the web refused the order ({error.code}): {detail}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (urllib.error.URLError, OSError) as error:
        print(
            f"pubsub publish-sample: the web at {base} did not answer: {error}. "
            "Is the stack running (make dev)?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    total = order["total_cents"] / 100
    print(f"Order {order['id']} accepted: {len(items)} item(s), total {total:.2f}")
    print(f"  trace id: {headers.get('X-Trace-Id', order.get('trace_id', ''))}")
    print(f"  follow it: {base}/orders/{order['id']}")
    if not args.wait:
        return EXIT_OK
    return _wait_settled(base, order["id"], args.timeout)


def _wait_settled(base: str, order_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        try:
            order, _ = _http_json(f"{base}/api/orders/{order_id}")
        except (urllib.error.URLError, OSError) as error:
            print(f"pubsub publish-sample: lost the web at {base}: {error}", file=sys.stderr)
            return EXIT_FAILED
        for service, state in order["services"].items():
            if seen.get(service) != state["status"] and state["status"] != "pending":
                reason = f" ({state['reason']})" if state.get("reason") else ""
                print(f"  {service}: {state['status']}{reason}")
            seen[service] = state["status"]
        if "pending" not in seen.values():
            print(f"Order {order_id}: {order['status']}")
            return EXIT_OK if order["status"] == "processed" else EXIT_FAILED
        if time.monotonic() > deadline:
            waiting = ", ".join(s for s, status in seen.items() if status == "pending")
            print(
                f"pubsub publish-sample: still pending after {timeout:.0f} s: {waiting}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(0.25)


def _publish_direct(
    args: argparse.Namespace, settings: Settings, items: list[dict[str, Any]]
) -> int:
    catalog = load_catalog(settings.catalog_path)
    event = OrderCreated(
        order_id=new_id(),
        customer_email=args.email,
        items=tuple(
            OrderItem(
                sku=line["sku"],
                name=catalog[line["sku"]].name,
                quantity=line["quantity"],
                unit_price_cents=catalog[line["sku"]].price_cents,
            )
            for line in items
        ),
    )
    clients = make_clients(settings)
    topic = arns_for(clients, settings.aws_region).topic(settings.topology.order_topic)
    response = clients.sns.publish(
        TopicArn=topic,
        Message=encode(event),
        MessageAttributes=message_attributes(event),  # type: ignore[arg-type]
    )
    print(f"Published {event.event_type} to {topic}")
    print(f"  message id: {response['MessageId']}")
    print(f"  event id:   {event.event_id}")
    print(f"  order id:   {event.order_id}")
    print(f"  trace id:   {event.trace_id}")
    print(
        "The web has no such order: its worker dead-letters the services' results "
        "for it (see `pubsub status`)."
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pubsub",
        description="Operate the pubsub-supervisor stack. Settings come from the "
        "environment and .env, as for every program.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    provision = sub.add_parser(
        "provision",
        help="apply the topology (topics, queues, DLQs, subscriptions, SES identity)",
        description=cmd_provision.__doc__,
    )
    provision.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be created or changed; change nothing",
    )
    provision.set_defaults(func=cmd_provision)

    status = sub.add_parser(
        "status",
        help="show each queue and DLQ: messages visible, in flight, dead-lettered",
        description=f"{cmd_status.__doc__} Exits {EXIT_FAILED} when a queue cannot be read "
        "(emulator down, topology not provisioned).",
    )
    status.add_argument(
        "--check",
        action="store_true",
        help=f"exit {EXIT_DEAD_LETTERS} when any dead-letter queue holds messages",
    )
    status.set_defaults(func=cmd_status)

    sample = sub.add_parser(
        "publish-sample",
        help="place a sample order through the web (or --direct to SNS)",
        description=f"{cmd_publish_sample.__doc__} Prints the order id and the trace id "
        "to grep the logs for.",
    )
    sample.add_argument(
        "--direct",
        action="store_true",
        help="publish an order.created event straight to the order topic, bypassing the "
        "web: the services process it, and as the web never heard of the order its worker "
        "dead-letters their results",
    )
    sample.add_argument("--email", default=SAMPLE_EMAIL, help="customer email of the order")
    sample.add_argument(
        "--url", help="the web's address (default: http://127.0.0.1:WEB_PORT from the settings)"
    )
    sample.add_argument(
        "--wait",
        action="store_true",
        help="wait until every service has handled the order; exit 1 unless it was processed",
    )
    sample.add_argument(
        "--timeout", type=float, default=60, help="seconds --wait waits (default: %(default)s)"
    )
    sample.set_defaults(func=cmd_publish_sample)
    return parser


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Run one command with the settings (loaded unless given); errors become exit codes."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings or Settings()
    except ValidationError as error:
        print(f"pubsub: configuration error:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.aws_endpoint_url and not (
        os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
    ):
        # The emulator takes any keys and `make dev` gives its programs `test` (boto3 never
        # reads .env). Deciding here, not through boto3's chain, keeps real keys away from
        # the emulator and asks no metadata endpoint. Real AWS keeps the normal chain.
        os.environ["AWS_ACCESS_KEY_ID"] = "test"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "test"  # noqa: S105 - the emulator's keys
    command: Command = args.func
    try:
        return command(args, settings)
    except Exception as error:
        # botocore errors already say what failed and where; add the endpoint for context.
        where = settings.aws_endpoint_url or "AWS"
        print(f"pubsub {args.command}: failed against {where}: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
