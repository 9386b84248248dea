"""Checks that flag what real AWS rejects (or silently breaks) but emulators accept.

LocalStack and moto enforce neither queue policies nor most attribute limits, so a
topology can work locally and fail on AWS. These rules run on the definition before
`pubsub provision` applies it, on the live resources with `pubsub provision --check`, and
offline with `pubsub lint-topology`. Each finding names its rule and how to fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pubsub_supervisor.topology import Arns, Topology, desired_queue_attributes

#: SQS attribute limits (AWS rejects values outside them; emulators often do not).
LIMITS: Mapping[str, tuple[int, int]] = {
    "MessageRetentionPeriod": (60, 1_209_600),
    "VisibilityTimeout": (0, 43_200),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "DelaySeconds": (0, 900),
    # 1 MiB since August 2025 (it was 256 KiB).
    "MaximumMessageSize": (1_024, 1_048_576),
}
#: SQS keeps at most 10 message attributes; raw delivery maps SNS attributes onto them.
MAX_SQS_MESSAGE_ATTRIBUTES = 10
#: A RedriveAllowPolicy `byQueue` lists at most 10 source queues.
MAX_REDRIVE_SOURCES = 10
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class Subscription:
    """An SNS subscription of a queue to a topic."""

    topic_arn: str
    queue_arn: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Resources and their attributes, as defined or as found at an endpoint."""

    topics: Mapping[str, Mapping[str, str]]  # topic ARN -> attributes
    queues: Mapping[str, Mapping[str, str]]  # queue ARN -> attributes
    subscriptions: tuple[Subscription, ...]
    #: Message attributes the code sends with each event (None: not checked).
    message_attribute_count: int | None = None


@dataclass(frozen=True)
class Finding:
    """One problem: which rule, which resource, what is wrong and how to fix it."""

    rule: str
    resource: str
    message: str

    def describe(self) -> str:
        """One line for the command's output."""
        return f"[{self.rule}] {self.resource}: {self.message}"


def _name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _is_fifo(name_or_arn: str) -> bool:
    return _name(name_or_arn).endswith(".fifo")


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def desired_snapshot(
    topology: Topology, arns: Arns, message_attribute_count: int | None = None
) -> Snapshot:
    """The snapshot `apply_topology` would produce."""
    queues: dict[str, Mapping[str, str]] = {}
    for spec in topology.queues:
        for name, attributes in desired_queue_attributes(spec, arns).items():
            queues[arns.queue(name)] = attributes
    return Snapshot(
        topics={arns.topic(t): {} for t in topology.topics},
        queues=queues,
        subscriptions=tuple(
            Subscription(arns.topic(q.topic), arns.queue(q.name), {"RawMessageDelivery": "true"})
            for q in topology.queues
        ),
        message_attribute_count=message_attribute_count,
    )


def live_snapshot(
    topology: Topology,
    arns: Arns,
    *,
    sns: Any,
    sqs: Any,
    message_attribute_count: int | None = None,
) -> tuple[Snapshot, list[Finding]]:
    """Read the topology's resources from an endpoint; missing ones become findings."""
    missing: list[Finding] = []
    topics: dict[str, Mapping[str, str]] = {}
    queues: dict[str, Mapping[str, str]] = {}
    subscriptions: list[Subscription] = []
    for topic in topology.topics:
        arn = arns.topic(topic)
        try:
            topics[arn] = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        except Exception as error:
            missing.append(Finding("exists", arn, f"topic not readable: {error}"))
            continue
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
            for sub in page["Subscriptions"]:
                if sub["Protocol"] != "sqs":
                    continue
                attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
                subscriptions.append(Subscription(arn, sub["Endpoint"], attrs["Attributes"]))
    for spec in topology.queues:
        for name in (spec.name, spec.dlq_name):
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except Exception as error:
                missing.append(Finding("exists", arns.queue(name), f"queue not readable: {error}"))
                continue
            queues[arns.queue(name)] = attributes["Attributes"]
        if not any(
            s.queue_arn == arns.queue(spec.name) and s.topic_arn == arns.topic(spec.topic)
            for s in subscriptions
        ):
            missing.append(
                Finding("exists", arns.queue(spec.name), f"not subscribed to {spec.topic}")
            )
    snapshot = Snapshot(topics, queues, tuple(subscriptions), message_attribute_count)
    return snapshot, missing


# -- rules ------------------------------------------------------------------------------


def _statements(policy: Any) -> list[dict[str, Any]]:
    if not isinstance(policy, dict):
        return []
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return [p for values in principal.values() for p in _listed(values)]
    return _listed(principal)


def _source_arns(statement: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for operator, tests in (statement.get("Condition") or {}).items():
        if operator.startswith(("ArnEquals", "ArnLike", "StringEquals", "StringLike")):
            for key, values in tests.items():
                if key.lower() == "aws:sourcearn":
                    found += _listed(values)
    return found


def _grants_send(statement: Mapping[str, Any]) -> bool:
    actions = _listed(statement.get("Action"))
    return statement.get("Effect") == "Allow" and any(
        a in ("sqs:SendMessage", "sqs:*", "*") for a in actions
    )


def rule_queue_policy(snapshot: Snapshot) -> list[Finding]:
    """A subscribed queue needs a policy letting exactly its topic send to it."""
    findings: list[Finding] = []
    for queue_arn, attributes in snapshot.queues.items():
        topics = sorted({s.topic_arn for s in snapshot.subscriptions if s.queue_arn == queue_arn})
        statements = [s for s in _statements(_json(attributes.get("Policy"))) if _grants_send(s)]
        for statement in statements:
            sources = _source_arns(statement)
            open_to_services = set(_principals(statement)) & {"sns.amazonaws.com", "*"}
            if open_to_services and (not sources or any("*" in arn for arn in sources)):
                findings.append(
                    Finding(
                        "queue-policy",
                        queue_arn,
                        f"statement {statement.get('Sid', '(no Sid)')!r} lets anyone send: "
                        "scope it with an ArnEquals aws:SourceArn condition naming the topic",
                    )
                )
            if queue_arn not in _listed(statement.get("Resource")):
                findings.append(
                    Finding(
                        "queue-policy",
                        queue_arn,
                        f"statement {statement.get('Sid', '(no Sid)')!r} names resource "
                        f"{statement.get('Resource')!r}, not this queue",
                    )
                )
        for topic_arn in topics:
            allowed = any(
                topic_arn in _source_arns(s)
                and set(_principals(s)) & {"sns.amazonaws.com", "*"}
                and queue_arn in _listed(s.get("Resource"))
                for s in statements
            )
            if not allowed:
                findings.append(
                    Finding(
                        "queue-policy",
                        queue_arn,
                        f"no policy statement lets {topic_arn} send: AWS drops every message "
                        "SNS delivers (emulators deliver anyway); provision adds it",
                    )
                )
    return findings


def rule_fifo_match(snapshot: Snapshot) -> list[Finding]:
    """FIFO and standard must match between a queue, its DLQ and its topic."""
    findings: list[Finding] = []
    for queue_arn, attributes in snapshot.queues.items():
        fifo = _is_fifo(queue_arn)
        if (attributes.get("FifoQueue", "false").lower() == "true") != fifo:
            findings.append(
                Finding(
                    "fifo-match",
                    queue_arn,
                    "FifoQueue and the name disagree: a FIFO queue's name ends in .fifo",
                )
            )
        redrive = _json(attributes.get("RedrivePolicy")) or {}
        target = redrive.get("deadLetterTargetArn")
        if target and _is_fifo(target) != fifo:
            findings.append(
                Finding(
                    "fifo-match",
                    queue_arn,
                    f"dead-letter queue {_name(target)} is "
                    f"{'FIFO' if _is_fifo(target) else 'standard'}; it must be the same type",
                )
            )
    for sub in snapshot.subscriptions:
        if _is_fifo(sub.topic_arn) != _is_fifo(sub.queue_arn):
            findings.append(
                Finding(
                    "fifo-match",
                    sub.queue_arn,
                    f"subscribed to {_name(sub.topic_arn)}: a FIFO topic delivers to FIFO "
                    "queues and a standard topic to standard queues",
                )
            )
    for topic_arn, attributes in snapshot.topics.items():
        if (attributes.get("FifoTopic", "false").lower() == "true") != _is_fifo(topic_arn):
            findings.append(
                Finding("fifo-match", topic_arn, "FifoTopic and the name (.fifo) disagree")
            )
    return findings


def rule_raw_delivery(snapshot: Snapshot) -> list[Finding]:
    """Queue subscriptions deliver raw, and events fit in SQS's 10 message attributes."""
    findings: list[Finding] = []
    for sub in snapshot.subscriptions:
        raw = sub.attributes.get("RawMessageDelivery", "false")
        if raw != "true":
            findings.append(
                Finding(
                    "raw-delivery",
                    sub.queue_arn,
                    f"subscription to {_name(sub.topic_arn)} has RawMessageDelivery={raw!r}: "
                    "the consumers read event attributes as SQS message attributes, which "
                    "only raw delivery provides",
                )
            )
    count = snapshot.message_attribute_count
    if count is not None and count > MAX_SQS_MESSAGE_ATTRIBUTES and snapshot.subscriptions:
        findings.append(
            Finding(
                "raw-delivery",
                "events",
                f"events carry {count} message attributes; with raw delivery AWS fails "
                f"delivery to SQS above {MAX_SQS_MESSAGE_ATTRIBUTES}",
            )
        )
    return findings


def rule_limits(snapshot: Snapshot) -> list[Finding]:
    """Attribute values inside AWS's limits; a DLQ keeps messages longer than its source."""
    findings: list[Finding] = []
    for queue_arn, attributes in snapshot.queues.items():
        for key, (low, high) in LIMITS.items():
            value = attributes.get(key)
            if value is None:
                continue
            if not value.isdigit() or not low <= int(value) <= high:
                findings.append(
                    Finding("limits", queue_arn, f"{key}={value} is outside {low}..{high}")
                )
        redrive = _json(attributes.get("RedrivePolicy")) or {}
        if "maxReceiveCount" in redrive and not 1 <= int(redrive["maxReceiveCount"]) <= 1000:
            findings.append(
                Finding(
                    "limits",
                    queue_arn,
                    f"maxReceiveCount={redrive['maxReceiveCount']} is outside 1..1000",
                )
            )
        dlq = snapshot.queues.get(redrive.get("deadLetterTargetArn", ""))
        if dlq is not None:
            source = int(attributes.get("MessageRetentionPeriod", "345600"))
            kept = int(dlq.get("MessageRetentionPeriod", "345600"))
            if kept <= source:
                # A moved message keeps its original enqueue time, so it would expire early.
                findings.append(
                    Finding(
                        "limits",
                        queue_arn,
                        f"its DLQ keeps messages {kept} s, not longer than the queue's "
                        f"{source} s: dead letters expire soon after they arrive",
                    )
                )
    return findings


def rule_redrive(snapshot: Snapshot) -> list[Finding]:
    """The dead-letter queue exists and allows this queue as a source."""
    findings: list[Finding] = []
    for queue_arn, attributes in snapshot.queues.items():
        redrive = _json(attributes.get("RedrivePolicy"))
        if attributes.get("RedrivePolicy") and not redrive:
            findings.append(Finding("redrive", queue_arn, "RedrivePolicy is not valid JSON"))
            continue
        if redrive:
            target = redrive.get("deadLetterTargetArn", "")
            if target not in snapshot.queues:
                findings.append(
                    Finding(
                        "redrive",
                        queue_arn,
                        f"dead-letter queue {target or '(none)'} does not exist: AWS rejects "
                        "the RedrivePolicy",
                    )
                )
                continue
            allow = _json(snapshot.queues[target].get("RedriveAllowPolicy"))
            if allow and not _allows_source(allow, queue_arn):
                findings.append(
                    Finding(
                        "redrive",
                        queue_arn,
                        f"{_name(target)}'s RedriveAllowPolicy does not allow this queue",
                    )
                )
        allow = _json(attributes.get("RedriveAllowPolicy"))
        if allow and len(allow.get("sourceQueueArns", [])) > MAX_REDRIVE_SOURCES:
            findings.append(
                Finding(
                    "redrive", queue_arn, f"byQueue lists more than {MAX_REDRIVE_SOURCES} sources"
                )
            )
    return findings


def _allows_source(allow: Mapping[str, Any], source_arn: str) -> bool:
    permission = allow.get("redrivePermission", "allowAll")
    if permission == "allowAll":
        return True
    if permission == "denyAll":
        return False
    return source_arn in allow.get("sourceQueueArns", [])


def rule_encryption(snapshot: Snapshot) -> list[Finding]:
    """Every queue is encrypted, with a scheme SNS can deliver to."""
    findings: list[Finding] = []
    subscribed = {s.queue_arn for s in snapshot.subscriptions}
    for queue_arn, attributes in snapshot.queues.items():
        managed = attributes.get("SqsManagedSseEnabled", "false").lower() == "true"
        kms = attributes.get("KmsMasterKeyId")
        if managed and kms:
            findings.append(
                Finding(
                    "encryption",
                    queue_arn,
                    "SqsManagedSseEnabled and KmsMasterKeyId are both set: choose one",
                )
            )
        elif not managed and not kms:
            findings.append(
                Finding("encryption", queue_arn, "not encrypted: set SqsManagedSseEnabled=true")
            )
        elif kms and queue_arn in subscribed and kms in ("alias/aws/sqs", "aws/sqs"):
            findings.append(
                Finding(
                    "encryption",
                    queue_arn,
                    "encrypted with the AWS-managed key alias/aws/sqs, whose key policy SNS "
                    "cannot use: deliveries fail; use SSE-SQS or a customer key",
                )
            )
    return findings


def rule_names(snapshot: Snapshot) -> list[Finding]:
    """Names AWS accepts."""
    findings: list[Finding] = []
    for queue_arn in snapshot.queues:
        name = _name(queue_arn).removesuffix(".fifo")
        if not _QUEUE_NAME.match(name) or len(_name(queue_arn)) > 80:
            findings.append(
                Finding("names", queue_arn, "queue names are 1-80 of A-Z a-z 0-9 - _ (.fifo)")
            )
    for topic_arn in snapshot.topics:
        if not _TOPIC_NAME.match(_name(topic_arn).removesuffix(".fifo")):
            findings.append(
                Finding("names", topic_arn, "topic names are 1-256 of A-Z a-z 0-9 - _ (.fifo)")
            )
    return findings


RULES: tuple[Callable[[Snapshot], list[Finding]], ...] = (
    rule_names,
    rule_queue_policy,
    rule_fifo_match,
    rule_raw_delivery,
    rule_limits,
    rule_redrive,
    rule_encryption,
)


def lint(snapshot: Snapshot) -> list[Finding]:
    """Every finding of every rule."""
    return [finding for rule in RULES for finding in rule(snapshot)]
