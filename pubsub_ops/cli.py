"""`pubsub`: the operator's command line (also reachable through make)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pubsub_ops import cloudformation, compose_scale, iam, lint, scaffold, trace
from pubsub_ops.tables import table
from pubsub_supervisor import dlq, tracing
from pubsub_supervisor.catalog import Product, load_catalog
from pubsub_supervisor.clients import arns_for, make_clients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import (
    OrderCreated,
    OrderItem,
    ServiceResult,
    encode,
    message_attributes,
    new_id,
)
from pubsub_supervisor.migrate import current, migrate
from pubsub_supervisor.provision import provision
from pubsub_supervisor.queues import QueueReader
from pubsub_supervisor.settings import SERVICE_NAMES, STORE_NAMES, Settings
from pubsub_supervisor.topology import Arns, QueueSpec

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


def _message_attribute_count() -> int:
    """How many SNS message attributes the code sends with an event."""
    return len(
        message_attributes(
            ServiceResult(order_id="x", service=SERVICE_NAMES[0], status="processed")
        )
    )


def _report(findings: list[lint.Finding], what: str) -> int:
    for finding in findings:
        print(finding.describe())
    if findings:
        print(f"{len(findings)} problem(s) in {what}; real AWS would reject or break them.")
        return EXIT_FAILED
    print(f"No problems in {what}.")
    return EXIT_OK


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    """Create or update every topic, queue, subscription and the SES sender identity."""
    clients = make_clients(settings)
    topology = settings.topology
    where = settings.aws_endpoint_url or f"AWS ({settings.aws_region})"
    arns = arns_for(clients, settings.aws_region)
    count = _message_attribute_count()
    if args.check:
        print(f"Checking the live resources at {where}")
        snapshot, missing = lint.live_snapshot(
            topology, arns, sns=clients.sns, sqs=clients.sqs, message_attribute_count=count
        )
        return _report(missing + lint.lint(snapshot), f"the resources at {where}")
    # Refuse a definition AWS would reject, before creating anything.
    findings = lint.lint(lint.desired_snapshot(topology, arns, count))
    if findings:
        return _report(findings, "the topology definition")
    print(f"{'Planning' if args.dry_run else 'Applying'} the topology at {where}")
    changes = provision(settings, clients, arns=arns, dry_run=args.dry_run, progress=print)
    if not changes:
        print("Nothing to change: every resource is as defined.")
    else:
        verb = "would change" if args.dry_run else "changed"
        print(f"{len(changes)} resource(s) {verb}.")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring every store's schema to the newest revision (programs also do this at start)."""
    unknown = sorted(set(args.stores) - set(STORE_NAMES))
    if unknown:
        print(f"pubsub migrate: unknown store(s) {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    for name in args.stores or STORE_NAMES:
        engine = make_engine(settings.database_url(name))
        try:
            before = migrate(engine, name)
            after = current(engine)
        finally:
            engine.dispose()
        change = "up to date" if before == after else f"{before} -> {after}"
        print(f"{name}: {change}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show every queue and its dead-letter queue: messages visible, in flight, dead."""
    reader = QueueReader(make_clients(settings, probe=True).sqs, settings.topology)
    rows = reader.depths()
    where = settings.aws_endpoint_url or f"AWS ({settings.aws_region})"
    print(f"Queues at {where}")
    header = ("QUEUE", "CONSUMER", "VISIBLE", "IN FLIGHT", "DELAYED", "DLQ", "DLQ MESSAGES")
    cells = [
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
    print(table(header, cells, right={2, 3, 4, 6}, rule=False))
    dead = sum(r.dlq_visible for r in rows)
    if dead:
        print(f"{dead} message(s) in dead-letter queues: see `pubsub dlq list` or the /dlq page.")
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
    # The sample starts its own trace, as a request would: its trace id is in the logs.
    tracing.init("pubsub")
    try:
        with tracing.producing(settings.topology.order_topic):
            return _publish_sample(settings, args.email, items, catalog)
    finally:
        tracing.flush()


def _publish_sample(
    settings: Settings, customer: str, items: list[dict[str, Any]], catalog: dict[str, Product]
) -> int:
    event = OrderCreated(
        order_id=new_id(),
        customer_email=customer,
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
        MessageAttributes=tracing.with_context(message_attributes(event)),
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


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def _dlq_queues(args: argparse.Namespace, settings: Settings) -> list[QueueSpec] | None:
    try:
        return dlq.select_queues(settings.topology, args.queue)
    except KeyError as error:
        print(f"pubsub dlq: {error.args[0]}", file=sys.stderr)
        return None


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    """Show what sits in each dead-letter queue, and why; nothing is removed."""
    specs = _dlq_queues(args, settings)
    if specs is None:
        return EXIT_CONFIG
    sqs = make_clients(settings).sqs
    found = {spec.dlq_name: dlq.list_dead_letters(sqs, spec, args.limit) for spec in specs}
    if args.json:
        print(
            json.dumps({name: [d.as_dict() for d in page.letters] for name, page in found.items()})
        )
        return EXIT_OK
    for spec in specs:
        page = found[spec.dlq_name]
        if not page.letters:
            print(f"{spec.dlq_name}: empty")
            continue
        print(f"{spec.dlq_name}: {len(page.letters)} message(s), from {spec.name}")
        for d in page.letters:
            when = d.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S") if d.dead_lettered_at else "?"
            about = f"order {d.order_id}" if d.order_id else "no order id"
            received = f", received {d.receive_count}x" if d.receive_count else ""
            print(f"  {when}  {d.event_type or 'unknown type'}  {about}{received}")
            print(f"    reason: {d.reason}")
        if page.more:
            print(
                f"  {len(page.letters)} shown, more in the queue (approximate count "
                f"{page.approximate_count}): raise --limit to see more"
            )
    total = sum(len(page.letters) for page in found.values())
    print(f"{total} dead-lettered message(s) shown.", end="")
    print(" After a fix, move them back with: pubsub dlq redrive" if total else "")
    return EXIT_OK


def cmd_dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    """Move dead-lettered messages back to their source queue, to be processed again."""
    specs = _dlq_queues(args, settings)
    if specs is None:
        return EXIT_CONFIG
    sqs = make_clients(settings).sqs
    moved = failed = 0
    for spec in specs:
        result = dlq.redrive(sqs, spec)
        moved += result.moved
        failed += result.failed
        line = f"{result.dlq} -> {result.source_queue}: moved {result.moved}"
        if result.failed:
            line += f", FAILED {result.failed}"
        if result.skipped:
            line += f", left {result.skipped} that arrived during the redrive"
        print(line)
    print(f"Moved {moved} message(s) back." + (f" {failed} could not be moved." if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_lint_topology(args: argparse.Namespace, settings: Settings) -> int:
    """Check the topology definition offline against the rules real AWS enforces."""
    arns = Arns(account=args.account, region=settings.aws_region)
    snapshot = lint.desired_snapshot(settings.topology, arns, _message_attribute_count())
    return _report(lint.lint(snapshot), "the topology definition")


def cmd_iam_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Print the least-privilege IAM policy of the container's role, as JSON."""
    if args.program is not None and args.program not in iam.program_names():
        print(
            f"pubsub iam-policy: no program named {args.program!r}; valid names: "
            f"{', '.join(iam.program_names())}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.account:
        arns = Arns(account=args.account, region=settings.aws_region)
    else:
        arns = arns_for(make_clients(settings), settings.aws_region)
    if args.program is None:
        policy = iam.runtime_policy(settings.topology, arns)
    else:
        policy = iam.program_policy(settings.topology, arns, args.program)
    print(json.dumps(policy, indent=2))
    return EXIT_OK


def cmd_compose_scale(args: argparse.Namespace, _settings: Settings) -> int:
    """Write the scale-out compose override, one container per program of the registry."""
    text = compose_scale.render()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_template(args: argparse.Namespace, settings: Settings) -> int:
    """Write a CloudFormation template generated from the topology (JSON)."""
    text = cloudformation.render(settings, args.stack)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_new_service(args: argparse.Namespace, _settings: Settings) -> int:
    """Write a new service's handler, registry entry, supervisord block and migration."""
    try:
        written = scaffold.new_service(args.root, args.name)
    except (scaffold.ScaffoldError, ValueError) as error:
        print(f"pubsub new-service: {error}", file=sys.stderr)
        return EXIT_FAILED
    for path in written.created:
        print(f"created {path}")
    for path in written.edited:
        print(f"added {args.name} to {path}")
    print(
        "next: write its effect in the handler (and its tables in both files), then restart "
        '`make dev` (README.md, "Add your own service")'
    )
    return EXIT_OK


# --- pubsub trace / pubsub logs: the programs' log files ------------------------------


def cmd_trace(args: argparse.Namespace, _settings: Settings) -> int:
    """Print one order's (or trace's) path through every program, in time order, from the
    programs' log files, with the time of each line since the first."""
    directory: Path = args.log_dir or trace.log_dir()
    files = trace.log_files(directory)
    if not files:
        print(
            f"pubsub trace: no program logs in {directory.resolve()} (PUBSUB_LOG_DIR, or "
            "var/log here): run it where `make dev` runs, or pass --log-dir",
            file=sys.stderr,
        )
        return EXIT_FAILED
    found = trace.matching(trace.records(files), args.id)
    if not found:
        print(
            f"pubsub trace: no log line names order or trace {args.id} in the {len(files)} "
            f"log files of {directory.resolve()} (PUBSUB_LOG_DIR); check the id, or the logs "
            "were rotated away",
            file=sys.stderr,
        )
        return EXIT_FAILED
    trace.render(args.id, found, sys.stdout)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, _settings: Settings) -> int:
    """Print the end of every program's log, each line marked with its program; with
    --follow, keep printing new lines (Ctrl-C stops)."""
    directory: Path = args.log_dir or trace.log_dir()
    if not directory.is_dir():
        print(
            f"pubsub logs: {directory.resolve()} does not exist (PUBSUB_LOG_DIR, or var/log "
            "here): start the stack with `make dev` first, or pass --log-dir",
            file=sys.stderr,
        )
        return EXIT_FAILED
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --follow ends
        trace.follow(directory, sys.stdout, backlog=args.lines, keep_going=lambda: args.follow)
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
    provision.add_argument(
        "--check",
        action="store_true",
        help="change nothing; read the live resources and flag what real AWS would reject",
    )
    provision.set_defaults(func=cmd_provision)

    migrate_cmd = sub.add_parser(
        "migrate",
        help="migrate the stores DATABASE_URL names (SQLite files or PostgreSQL schemas)",
        description=cmd_migrate.__doc__,
    )
    migrate_cmd.add_argument(
        "stores", nargs="*", metavar="STORE", help=f"any of {', '.join(STORE_NAMES)} (default: all)"
    )
    migrate_cmd.set_defaults(func=cmd_migrate)

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

    dlq_parser = sub.add_parser(
        "dlq",
        help="inspect and redrive the dead-letter queues",
        description="Dead-letter queues: messages a consumer gave up on, with the reason.",
    )
    dlq_sub = dlq_parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    queue_help = "only this queue: a consumer (email), its queue or its DLQ name"
    listing = dlq_sub.add_parser(
        "list", help="show each DLQ's messages and reasons", description=cmd_dlq_list.__doc__
    )
    listing.add_argument("--queue", metavar="NAME", help=queue_help)
    listing.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    listing.add_argument(
        "--limit",
        type=_positive_int,
        default=dlq.PAGE_SIZE,
        help="messages to show per DLQ (default: %(default)s); the rest stay unread",
    )
    listing.set_defaults(func=cmd_dlq_list)
    redrive = dlq_sub.add_parser(
        "redrive",
        help="move DLQ messages back to their source queue",
        description=f"{cmd_dlq_redrive.__doc__} Run it after fixing the cause: a message "
        "that fails again returns to the DLQ. Exit status 1 if any message could not be moved.",
    )
    redrive.add_argument("--queue", metavar="NAME", help=queue_help)
    redrive.set_defaults(func=cmd_dlq_redrive)

    lint_cmd = sub.add_parser(
        "lint-topology",
        help="check the topology definition offline (queue policies, FIFO, limits, ...)",
        description=cmd_lint_topology.__doc__,
    )
    lint_cmd.add_argument(
        "--account",
        default="000000000000",
        help="account id used to build ARNs (default: a placeholder; no AWS call is made)",
    )
    lint_cmd.set_defaults(func=cmd_lint_topology)

    policy = sub.add_parser(
        "iam-policy",
        help="print the least-privilege IAM policy for the container's role",
        description=cmd_iam_policy.__doc__,
    )
    policy.add_argument(
        "--account",
        help="account id for the ARNs (default: the caller's, from STS GetCallerIdentity)",
    )
    policy.add_argument(
        "--program",
        metavar="NAME",
        help="the policy of one program's own role, for one program per container: "
        f"{', '.join(iam.program_names())} (default: the all-in-one container's shared role)",
    )
    policy.set_defaults(func=cmd_iam_policy)

    scale = sub.add_parser(
        "compose-scale",
        help="write the scale-out compose override (one container per program)",
        description=cmd_compose_scale.__doc__,
    )
    scale.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    scale.set_defaults(func=cmd_compose_scale)

    template = sub.add_parser(
        "template",
        help="write a CloudFormation template: the messaging stack or the ECS service",
        description=f"{cmd_template.__doc__} MAX_RECEIVE_COUNT and QUEUE_VISIBILITY_TIMEOUT "
        "come from the settings; the prefix and the sender are the stack's parameters.",
    )
    template.add_argument(
        "stack",
        choices=cloudformation.STACKS,
        help="messaging: topics, queues, DLQs, subscriptions, SES configuration set; "
        "ecs: the all-in-one task on Fargate; ecs-per-program: one service per program, "
        "the services scaled on their queue's backlog",
    )
    template.add_argument(
        "-o", "--output", type=Path, help="file to write (default: standard output)"
    )
    template.set_defaults(func=cmd_template)

    new = sub.add_parser(
        "new-service",
        help="add a service: its handler, registry entry, supervisord block and migration",
        description=cmd_new_service.__doc__,
    )
    new.add_argument("name", help="the service's name (lower-case letters, digits, '_')")
    new.add_argument(
        "--root", type=Path, default=Path(), help="the project's folder (default: here)"
    )
    new.set_defaults(func=cmd_new_service)

    trace_cmd = sub.add_parser(
        "trace",
        help="one order's path through every program, from their log files",
        description=cmd_trace.__doc__,
    )
    trace_cmd.add_argument("id", help="an order id (or a trace id)")
    trace_cmd.add_argument(
        "--log-dir", type=Path, help="the programs' logs (default: PUBSUB_LOG_DIR, or var/log)"
    )
    trace_cmd.set_defaults(func=cmd_trace)

    logs_cmd = sub.add_parser(
        "logs",
        help="every program's log in one stream, each line marked with its program",
        description=cmd_logs.__doc__,
    )
    logs_cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs_cmd.add_argument(
        "-n", "--lines", type=int, default=10, help="lines of each log to start with (10)"
    )
    logs_cmd.add_argument(
        "--log-dir", type=Path, help="the programs' logs (default: PUBSUB_LOG_DIR, or var/log)"
    )
    logs_cmd.set_defaults(func=cmd_logs)
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
