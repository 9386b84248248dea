"""`pubsub`: the operator's command line (also reachable through make)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from pubsub_supervisor.aws import arns_for, make_clients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.migrate import current, migrate
from pubsub_supervisor.settings import STORE_NAMES, Settings
from pubsub_supervisor.topology import apply_topology

#: Exit codes, named so scripts can tell failures apart.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

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

    migrate_cmd = sub.add_parser(
        "migrate",
        help="migrate the stores DATABASE_URL names (SQLite files or PostgreSQL schemas)",
        description=cmd_migrate.__doc__,
    )
    migrate_cmd.add_argument(
        "stores", nargs="*", metavar="STORE", help=f"any of {', '.join(STORE_NAMES)} (default: all)"
    )
    migrate_cmd.set_defaults(func=cmd_migrate)
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
