"""AWS calls the stack's programs make, by operation: per order in a step, per minute idle.

Every program records each botocore call it makes (`tests/support/callrecorder`, put on
the programs' PYTHONPATH by `bench.e2e.stack`): the web, its worker and every service are
counted by the same hook, whatever client or thread makes the call.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from pubsub_supervisor import registry
from tests.support.stack import PROGRAMS

#: Largest batch of SQS receive/delete and of SNS PublishBatch.
BATCH = 10
#: Operations shown on their own in the table, in this order; the rest are summed.
SHOWN = (
    "sqs.ReceiveMessage",
    "sqs.DeleteMessageBatch",
    "sqs.DeleteMessage",
    "sns.Publish",
    "sns.PublishBatch",
    "ses.SendEmail",
    "sqs.ChangeMessageVisibilityBatch",
    "sqs.GetQueueAttributes",
)


def read(path: Path) -> list[dict[str, object]]:
    """Every recorded call of the stack's programs (the harness's own calls are left out)."""
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        try:
            call = json.loads(line)
        except ValueError:
            continue  # a line cut short by a program killed mid-write
        if call.get("program") in PROGRAMS:
            calls.append(call)
    return calls


def count(calls: Iterable[Mapping[str, object]], start: float, end: float) -> dict[str, int]:
    """Calls started in [start, end) (epoch seconds), by `service.Operation`."""
    counts: Counter[str] = Counter()
    for call in calls:
        at = call.get("t")
        if isinstance(at, int | float) and start <= at < end:
            counts[f"{call['service']}.{call['operation']}"] += 1
    return dict(sorted(counts.items()))


def per_order(counts: Mapping[str, int], orders: int) -> dict[str, float]:
    """Each operation's calls divided by `orders`."""
    return {op: n / orders for op, n in counts.items()} if orders else {}


def messages_per_order() -> int:
    """SQS messages one order makes: its event in each service's queue, each service's
    result in the web's queue, and the email's SES send event."""
    services = len(registry.SERVICES)
    return services + services + 1


def design_minimum() -> dict[str, float]:
    """The fewest calls per order the design allows, every batch full, by operation."""
    services = len(registry.SERVICES)
    messages = messages_per_order()
    return {
        "sqs.ReceiveMessage": messages / BATCH,
        "sqs.DeleteMessageBatch": messages / BATCH,
        "sns.PublishBatch": (1 + services) / BATCH,
        "ses.SendEmail": 1.0,
    }


def grouped(per: Mapping[str, float]) -> list[float]:
    """The `SHOWN` operations' values, then the rest summed, then the total."""
    shown = [per.get(op, 0.0) for op in SHOWN]
    other = sum(v for op, v in per.items() if op not in SHOWN)
    return [*shown, other, sum(per.values())]
