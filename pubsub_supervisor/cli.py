"""`pubsub`: the operator's command line (also reachable through make)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from pubsub_supervisor import dlq, iam, lint
from pubsub_supervisor.aws import arns_for, make_clients
from pubsub_supervisor.events import ServiceResult, message_attributes
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns, QueueSpec, apply_topology

#: Exit codes, named so scripts can tell failures apart.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

Command = Callable[[argparse.Namespace, Settings], int]


def _message_attribute_count() -> int:
    """How many SNS message attributes the code sends with an event."""
    return len(message_attributes(ServiceResult(order_id="x", service="x", status="processed")))


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
    changes = apply_topology(
        topology,
        sns=clients.sns,
        sqs=clients.sqs,
        ses=clients.ses,
        arns=arns,
        dry_run=args.dry_run,
        progress=print,
    )
    if not changes:
        print("Nothing to change: every resource is as defined.")
    else:
        verb = "would change" if args.dry_run else "changed"
        print(f"{len(changes)} resource(s) {verb}.")
    return EXIT_OK


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
    found = {spec.dlq_name: dlq.list_dead_letters(sqs, spec) for spec in specs}
    if args.json:
        print(json.dumps({name: [d.as_dict() for d in dead] for name, dead in found.items()}))
        return EXIT_OK
    for spec in specs:
        dead = found[spec.dlq_name]
        if not dead:
            print(f"{spec.dlq_name}: empty")
            continue
        print(f"{spec.dlq_name}: {len(dead)} message(s), from {spec.name}")
        for d in dead:
            when = d.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S") if d.dead_lettered_at else "?"
            about = f"order {d.order_id}" if d.order_id else "no order id"
            received = f", received {d.receive_count}x" if d.receive_count else ""
            print(f"  {when}  {d.event_type or 'unknown type'}  {about}{received}")
            print(f"    reason: {d.reason}")
    total = sum(len(dead) for dead in found.values())
    print(f"{total} dead-lettered message(s).", end="")
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
    if args.account:
        arns = Arns(account=args.account, region=settings.aws_region)
    else:
        arns = arns_for(make_clients(settings), settings.aws_region)
    print(json.dumps(iam.runtime_policy(settings.topology, arns), indent=2))
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
    policy.set_defaults(func=cmd_iam_policy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load settings, run the command; errors become exit codes."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"pubsub: configuration error:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
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
