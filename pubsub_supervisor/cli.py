"""`pubsub`: the operator's command line (also reachable through make)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from pubsub_supervisor import iam, lint
from pubsub_supervisor.aws import arns_for, make_clients
from pubsub_supervisor.events import ServiceResult, message_attributes
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns, apply_topology

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
