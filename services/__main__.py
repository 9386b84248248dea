"""`python -m services NAME`: the `NAME_service` program of any service in the registry."""

from __future__ import annotations

import sys

from pubsub_supervisor import registry
from services.order_service import main as run


def main(argv: list[str]) -> None:
    """Look the service up in pubsub_supervisor/registry.py and run it until SIGTERM."""
    if len(argv) != 1:
        sys.exit(f"usage: python -m services NAME (one of {', '.join(registry.names())})")
    try:
        spec = registry.get(argv[0])
    except KeyError as error:
        sys.exit(str(error.args[0]))
    run(spec.name, registry.resolve(spec.handler))


if __name__ == "__main__":
    main(sys.argv[1:])
