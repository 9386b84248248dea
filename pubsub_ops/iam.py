"""The least-privilege IAM policy of the container's role, generated from the topology.

The programs in the container publish to the order and results topics, consume their own
queues (the email service's SES send events among them), dead-letter their own messages
(the runtime sends a failed message to its queue's DLQ with a reason) and send email as
the one sender, with the stack's configuration set. The web also counts every DLQ (dashboard,
/metrics) and, on its DLQ page, reads dead letters and redrives them to their queue.
Provisioning (`pubsub provision`) is not part of this role: it runs with the operator's
credentials.

`allows` is a small evaluator of such a policy (Allow statements, exact or `*` patterns,
StringEquals/ArnEquals conditions), enough to check that every call the code makes is
covered; it is not a full IAM engine.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from pubsub_supervisor.topology import Arns, Topology

#: Calls that need no permission (GetCallerIdentity is always allowed).
UNAUTHORIZED_OPERATIONS = frozenset({("sts", "GetCallerIdentity")})

#: Actions on the consumer's own queues.
CONSUME_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
)
#: Actions on the dead-letter queues (the runtime dead-letters with a reason attribute).
DEAD_LETTER_ACTIONS = ("sqs:GetQueueUrl", "sqs:SendMessage")
#: Actions on the stack's own topics (publish; the web's readiness probe reads attributes).
TOPIC_ACTIONS = ("sns:GetTopicAttributes", "sns:Publish")
#: Actions on the dead-letter queues for the web's dashboard and DLQ page (read, redrive).
DLQ_PAGE_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
)
#: A redrive sends a dead letter back to its source queue.
REDRIVE_ACTIONS = ("sqs:SendMessage",)
EMAIL_ACTIONS = ("ses:SendEmail",)


def iam_action(service: str, operation: str) -> str | None:
    """The IAM action a botocore operation needs, or None when it needs none.

    Batch operations are authorised by their single-message action
    (`DeleteMessageBatch` needs `sqs:DeleteMessage`, `PublishBatch` needs `sns:Publish`).
    """
    if (service, operation) in UNAUTHORIZED_OPERATIONS:
        return None
    if operation.endswith("Batch"):
        operation = operation.removesuffix("Batch")
    return f"{service}:{operation}"


def runtime_policy(topology: Topology, arns: Arns) -> dict[str, Any]:
    """The policy document of the container's role."""
    queues = sorted(arns.queue(q.name) for q in topology.queues)
    dlqs = sorted(arns.queue(q.dlq_name) for q in topology.queues)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PublishToOwnTopics",
            "Effect": "Allow",
            "Action": list(TOPIC_ACTIONS),
            "Resource": [arns.topic(t) for t in topology.published_topics],
        },
        {
            "Sid": "ConsumeOwnQueues",
            "Effect": "Allow",
            "Action": list(CONSUME_ACTIONS),
            "Resource": queues,
        },
        {
            "Sid": "DeadLetterOwnMessages",
            "Effect": "Allow",
            "Action": list(DEAD_LETTER_ACTIONS),
            "Resource": dlqs,
        },
        {
            "Sid": "WebDeadLetterPage",
            "Effect": "Allow",
            "Action": list(DLQ_PAGE_ACTIONS),
            "Resource": dlqs,
        },
        {
            "Sid": "WebRedriveToSourceQueues",
            "Effect": "Allow",
            "Action": list(REDRIVE_ACTIONS),
            "Resource": queues,
        },
    ]
    for sender in topology.email_identities:
        domain = sender.rpartition("@")[2]
        resources = [arns.email_identity(sender), arns.email_identity(domain)]
        if topology.configuration_set:
            # A send with a configuration set is authorised against it too.
            resources.append(arns.configuration_set(topology.configuration_set))
        statements.append(
            {
                "Sid": "SendEmailAsSender",
                "Effect": "Allow",
                "Action": list(EMAIL_ACTIONS),
                # SES authorises against the identity that verified the sender: the
                # address itself, or its domain.
                "Resource": resources,
                "Condition": {"StringEquals": {"ses:FromAddress": sender}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _conditions_hold(
    condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]
) -> bool:
    for operator, tests in condition.items():
        if operator not in ("StringEquals", "ArnEquals"):
            return False  # an operator this evaluator does not know never grants anything
        for key, wanted in tests.items():
            if context.get(key) not in _as_list(wanted):
                return False
    return True


def allows(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether an Allow statement of `policy` grants `action` on `resource` (no Deny)."""
    for statement in policy["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
            continue
        if _conditions_hold(statement.get("Condition", {}), context or {}):
            return True
    return False
