"""The least-privilege IAM policy of the container's role, generated from the topology.

The programs in the container publish to the order and results topics, consume their own
queues (the email service's SES send events among them), dead-letter their own messages
(the runtime sends a failed message to its queue's DLQ with a reason) and send email as
the one sender, with the stack's configuration set. The web also counts every DLQ (dashboard,
/metrics) and, on its DLQ page, reads dead letters and redrives them to their queue.
Provisioning (`pubsub provision`) is not part of this role: it runs with the operator's
credentials.

That all-in-one role is the shared container's trade-off: every program holds every
program's rights. `program_policy` is the policy of one program for the one-program-per-
container deployment, derived from the registry and the topology as well: the web reads
queue depths and dead letters and holds no SES right and no right to send to a queue; its
worker publishes order events and consumes the results; each service consumes its own
queue, dead-letters to its own DLQ and publishes results, and only the one that reads SES's
send events sends email.

`allows` is a small evaluator of such a policy (Allow statements, exact or `*` patterns,
StringEquals/ArnEquals conditions), enough to check that every call the code makes is
covered; it is not a full IAM engine.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from pubsub_supervisor import registry
from pubsub_supervisor.topology import EMAIL_SENDS, Arns, Topology

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
#: Reading queue depths (the dashboard, /metrics, the relay's backlog).
DEPTH_ACTIONS = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")
#: The DLQ page's read: receive briefly, then hand back (visibility 0).
DLQ_READ_ACTIONS = ("sqs:ChangeMessageVisibility", "sqs:ReceiveMessage")
#: The web and its worker, beside the registry's services.
WEB_PROGRAMS = ("web", "web_worker")
#: What the web's code can call but its own policy withholds: the DLQ page's redrive
#: (send to a service's queue, delete from the DLQ) is the operator's action in the
#: one-program-per-container deployment (`pubsub dlq redrive` with their credentials).
WITHHELD = {"web": frozenset({"sqs:SendMessage", "sqs:DeleteMessage"})}


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
    statements += _send_email(topology, arns)
    return {"Version": "2012-10-17", "Statement": statements}


def program_names() -> tuple[str, ...]:
    """Every program `program_policy` knows: the web, its worker, each service's program."""
    return (*WEB_PROGRAMS, *(spec.program for spec in registry.SERVICES))


def _statement(sid: str, actions: tuple[str, ...], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}


def _send_email(topology: Topology, arns: Arns) -> list[dict[str, Any]]:
    statements = []
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
    return statements


def program_policy(topology: Topology, arns: Arns, program: str) -> dict[str, Any]:
    """The policy of one program's own role (one program per container).

    :raise KeyError: no program has that name (the message lists the valid ones).
    """
    queues = [arns.queue(q.name) for q in topology.queues]
    dlqs = [arns.queue(q.dlq_name) for q in topology.queues]

    def own(*consumers: str) -> tuple[list[str], list[str]]:
        specs = [q for q in topology.queues if q.consumer in consumers]
        return [arns.queue(q.name) for q in specs], [arns.queue(q.dlq_name) for q in specs]

    statements: list[dict[str, Any]]
    if program == "web":
        statements = [
            _statement(
                "ReadinessProbe", ("sns:GetTopicAttributes",), [arns.topic(topology.order_topic)]
            ),
            # Each order's event goes out right after its commit (the relay catches the rest).
            _statement("PublishOrderEvents", ("sns:Publish",), [arns.topic(topology.order_topic)]),
            _statement("QueueDepths", DEPTH_ACTIONS, sorted(queues + dlqs)),
            _statement("ReadDeadLetters", DLQ_READ_ACTIONS, sorted(dlqs)),
        ]
    elif program == "web_worker":
        queue, dlq = own("web")
        statements = [
            _statement("PublishOrderEvents", ("sns:Publish",), [arns.topic(topology.order_topic)]),
            _statement("ConsumeResults", CONSUME_ACTIONS, queue),
            _statement("DeadLetterOwnMessages", DEAD_LETTER_ACTIONS, dlq),
            # The relay slows down while the queues it feeds are backed up.
            _statement("QueueBacklog", DEPTH_ACTIONS, sorted(queues)),
        ]
    else:
        spec = next((s for s in registry.SERVICES if s.program == program), None)
        if spec is None:
            raise KeyError(
                f"no program named {program!r}; valid names: {', '.join(program_names())}"
            )
        consumers = (spec.queue, EMAIL_SENDS) if spec.ses_send_events else (spec.queue,)
        queue, dlq = own(*consumers)
        statements = [
            _statement("PublishResults", ("sns:Publish",), [arns.topic(topology.results_topic)]),
            _statement("ConsumeOwnQueues", CONSUME_ACTIONS, queue),
            _statement("DeadLetterOwnMessages", DEAD_LETTER_ACTIONS, dlq),
        ]
        if spec.ses_send_events:
            # The service that reads SES's send events is the one that sends the email.
            statements += _send_email(topology, arns)
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
