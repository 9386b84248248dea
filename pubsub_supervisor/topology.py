"""The one definition of the AWS resources, and the code that applies it to any endpoint.

This module depends on the standard library and boto3 only (the services come from
`registry.py`, which is stdlib only), so the LocalStack init hook
(`localstack/init/ready.d/`) can import it from the emulator's own interpreter, and the
`pubsub provision` command applies the very same definition to real AWS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pubsub_supervisor import registry
from pubsub_supervisor.registry import ServiceSpec

log = logging.getLogger(__name__)

#: What AWS keeps in a dead-letter queue: the maximum, 14 days, time enough to fix and redrive.
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
#: Source queues keep messages 4 days (the SQS default), explicit so drift is visible.
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600


@dataclass(frozen=True)
class QueueSpec:
    """One SQS queue with its dead-letter queue, subscribed to one topic."""

    name: str
    dlq_name: str
    topic: str
    max_receive_count: int
    visibility_timeout: int
    #: The program that consumes it (a service name, or `web` for the results queue).
    consumer: str


#: The consumer name of the queue that carries SES's "Send" events back to the email service.
EMAIL_SENDS = "email-sends"


@dataclass(frozen=True)
class Topology:
    """Every topic, queue, subscription and identity the stack needs."""

    order_topic: str
    results_topic: str
    queues: tuple[QueueSpec, ...]
    email_identities: tuple[str, ...] = ()
    #: SES publishes a "Send" event for each email it accepted to this topic, through the
    #: configuration set below; the email service reads them from its `email-sends` queue
    #: to learn whether a send whose answer it never got (a crash) went out.
    email_sends_topic: str | None = None
    configuration_set: str | None = None

    def queue_for(self, consumer: str) -> QueueSpec:
        """The queue one program consumes."""
        for queue in self.queues:
            if queue.consumer == consumer:
                return queue
        raise KeyError(f"no queue is consumed by {consumer!r}")

    @property
    def topics(self) -> tuple[str, ...]:
        """Topic names, in creation order."""
        return self.published_topics + ((self.email_sends_topic,) if self.email_sends_topic else ())

    @property
    def published_topics(self) -> tuple[str, ...]:
        """The topics the stack's own programs publish to (SES publishes to the other)."""
        return (self.order_topic, self.results_topic)


def build_topology(
    *,
    prefix: str,
    services: Iterable[str | ServiceSpec] = registry.SERVICES,
    max_receive_count: int = 5,
    visibility_timeout: int = 12,
    email_identities: Iterable[str] = (),
) -> Topology:
    """Name every resource from one prefix; `services` are specs or registered names."""
    order_topic = f"{prefix}-order-events"
    results_topic = f"{prefix}-order-results"

    def queue(consumer: str, topic: str) -> QueueSpec:
        name = f"{prefix}-{consumer}"
        return QueueSpec(
            name=name,
            dlq_name=f"{name}-dlq",
            topic=topic,
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
            consumer=consumer,
        )

    specs = tuple(s if isinstance(s, ServiceSpec) else registry.get(s) for s in services)
    queues = (*(queue(s.queue, order_topic) for s in specs), queue("web", results_topic))
    email_sends_topic = configuration_set = None
    if any(s.ses_send_events for s in specs):
        email_sends_topic = f"{prefix}-email-sends"
        configuration_set = f"{prefix}-email"
        queues += (queue(EMAIL_SENDS, email_sends_topic),)
    return Topology(
        order_topic=order_topic,
        results_topic=results_topic,
        queues=queues,
        email_identities=tuple(email_identities),
        email_sends_topic=email_sends_topic,
        configuration_set=configuration_set,
    )


@dataclass(frozen=True)
class Arns:
    """Turns names into ARNs for one account and region."""

    account: str
    region: str

    @property
    def partition(self) -> str:
        """`aws`, `aws-cn` or `aws-us-gov`, from the region."""
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    def topic(self, name: str) -> str:
        """ARN of an SNS topic."""
        return f"arn:{self.partition}:sns:{self.region}:{self.account}:{name}"

    def queue(self, name: str) -> str:
        """ARN of an SQS queue."""
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name}"

    def email_identity(self, identity: str) -> str:
        """ARN of an SES identity (an email address or a domain)."""
        return f"arn:{self.partition}:ses:{self.region}:{self.account}:identity/{identity}"

    def configuration_set(self, name: str) -> str:
        """ARN of an SES configuration set."""
        return f"arn:{self.partition}:ses:{self.region}:{self.account}:configuration-set/{name}"


def queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Allow only `topic_arn` to send to the queue (real AWS needs it; emulators ignore it)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowTopicToSend",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def desired_queue_attributes(spec: QueueSpec, arns: Arns) -> dict[str, dict[str, str]]:
    """Attributes of the DLQ and the source queue, keyed by queue name."""
    dlq_arn = arns.queue(spec.dlq_name)
    queue_arn = arns.queue(spec.name)
    return {
        spec.dlq_name: {
            "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
            "SqsManagedSseEnabled": "true",
            "RedriveAllowPolicy": json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn]}
            ),
        },
        spec.name: {
            "VisibilityTimeout": str(spec.visibility_timeout),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
            "ReceiveMessageWaitTimeSeconds": "20",
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
            ),
            "Policy": json.dumps(queue_policy(queue_arn, arns.topic(spec.topic))),
        },
    }


@dataclass(frozen=True)
class Change:
    """One thing `apply` created or changed (or would, in a dry run)."""

    action: str  # "create" | "update"
    kind: str  # "topic" | "queue" | "subscription" | "email identity"
    name: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One human-readable line, with the attributes that matter."""
        text = f"{self.action} {self.kind} {self.name}"
        for key, value in self.detail.items():
            shown = json.dumps(json.loads(value), sort_keys=True) if _is_json(value) else value
            text += f"\n    {key}: {shown}"
        return text


def _is_json(value: object) -> bool:
    return isinstance(value, str) and value[:1] in "{["


def _same(key: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if _is_json(wanted):
        try:
            return bool(json.loads(current) == json.loads(wanted))
        except ValueError:
            return False
    return current == wanted


def is_missing(error: BaseException) -> bool:
    """True when an AWS error says the topic, queue or subscription does not exist."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NotFound",
        "NotFoundException",
    }


def apply_topology(
    topology: Topology,
    *,
    sns: Any,
    sqs: Any,
    ses: Any | None,
    arns: Arns,
    dry_run: bool = False,
    progress: Callable[[str], None] = log.info,
) -> list[Change]:
    """Create or update every resource; return what changed. Applying twice changes nothing."""
    changes: list[Change] = []

    def record(change: Change) -> None:
        changes.append(change)
        progress(("would " if dry_run else "") + change.describe())

    for topic in topology.topics:
        try:
            sns.get_topic_attributes(TopicArn=arns.topic(topic))
        except Exception as error:
            if not is_missing(error):
                raise
            record(Change("create", "topic", topic, {"arn": arns.topic(topic)}))
            if not dry_run:
                sns.create_topic(Name=topic)

    for spec in topology.queues:
        for name, attributes in desired_queue_attributes(spec, arns).items():
            _apply_queue(sqs, name, attributes, dry_run, record)
        _apply_subscription(sns, spec, arns, dry_run, record)

    if ses is not None:
        verified = set(ses.list_identities(IdentityType="EmailAddress")["Identities"])
        for identity in topology.email_identities:
            if identity not in verified:
                record(Change("create", "email identity", identity))
                if not dry_run:
                    ses.verify_email_identity(EmailAddress=identity)
        _apply_configuration_set(ses, topology, arns, dry_run, record, progress)
    return changes


def sends_destination_name(configuration_set: str) -> str:
    """Name of the configuration set's one event destination (unique per set: LocalStack
    and moto, unlike AWS, keep one namespace of destination names for every set)."""
    return f"{configuration_set}-sends"


#: Error codes of an endpoint that does not implement SES event destinations (MiniStack).
_UNSUPPORTED = {"InvalidAction", "UnknownOperationException", "NotImplemented", "501"}


def _sends_destination(topology: Topology, arns: Arns) -> dict[str, Any]:
    assert topology.email_sends_topic is not None
    return {
        "Name": sends_destination_name(topology.configuration_set or ""),
        "Enabled": True,
        "MatchingEventTypes": ["send"],
        "SNSDestination": {"TopicARN": arns.topic(topology.email_sends_topic)},
    }


def _apply_configuration_set(
    ses: Any,
    topology: Topology,
    arns: Arns,
    dry_run: bool,
    record: Callable[[Change], None],
    progress: Callable[[str], None],
) -> None:
    """The configuration set every confirmation is sent with, publishing "Send" events."""
    name = topology.configuration_set
    if name is None:
        return
    wanted = _sends_destination(topology, arns)
    try:
        current = ses.describe_configuration_set(
            ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
        ).get("EventDestinations", [])
    except Exception as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        if code != "ConfigurationSetDoesNotExist":
            raise
        record(Change("create", "configuration set", name))
        if not dry_run:
            ses.create_configuration_set(ConfigurationSet={"Name": name})
        current = []
    existing = next((d for d in current if d.get("Name") == wanted["Name"]), None)
    if existing is not None and _destination_matches(existing, wanted):
        return
    detail = {"topic": wanted["SNSDestination"]["TopicARN"], "events": "send"}
    change = Change("update" if existing else "create", "event destination", name, detail)
    if dry_run:
        record(change)
        return
    try:
        if existing is None:
            ses.create_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestination=wanted
            )
        else:
            ses.update_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestination=wanted
            )
    except Exception as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        if code not in _UNSUPPORTED:
            raise
        progress(
            f"WARNING: this endpoint cannot publish SES send events ({code}): the email "
            "service cannot confirm a send it lost the answer to, and resends it"
        )
        return
    record(change)


def _destination_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return (
        bool(current.get("Enabled"))
        and [t.lower() for t in current.get("MatchingEventTypes", [])] == ["send"]
        and current.get("SNSDestination", {}).get("TopicARN")
        == wanted["SNSDestination"]["TopicARN"]
    )


def _apply_queue(
    sqs: Any,
    name: str,
    attributes: dict[str, str],
    dry_run: bool,
    record: Callable[[Change], None],
) -> None:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except Exception as error:
        if not is_missing(error):
            raise
        record(Change("create", "queue", name, attributes))
        if not dry_run:
            sqs.create_queue(QueueName=name, Attributes=attributes)
        return
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    drift = {k: v for k, v in attributes.items() if not _same(k, current.get(k), v)}
    if drift:
        record(Change("update", "queue", name, drift))
        if not dry_run:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=drift)


def _apply_subscription(
    sns: Any, spec: QueueSpec, arns: Arns, dry_run: bool, record: Callable[[Change], None]
) -> None:
    topic_arn, queue_arn = arns.topic(spec.topic), arns.queue(spec.name)
    name = f"{spec.topic} -> {spec.name}"
    existing: str | None = None
    try:
        pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
        for page in pages:
            for sub in page["Subscriptions"]:
                if sub["Protocol"] == "sqs" and sub["Endpoint"] == queue_arn:
                    existing = sub["SubscriptionArn"]
    except Exception as error:
        if not (dry_run and is_missing(error)):
            raise
    if existing is None:
        record(Change("create", "subscription", name, {"RawMessageDelivery": "true"}))
        if not dry_run:
            sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
        return
    current = sns.get_subscription_attributes(SubscriptionArn=existing)["Attributes"]
    if current.get("RawMessageDelivery", "false") != "true":
        record(Change("update", "subscription", name, {"RawMessageDelivery": "true"}))
        if not dry_run:
            sns.set_subscription_attributes(
                SubscriptionArn=existing,
                AttributeName="RawMessageDelivery",
                AttributeValue="true",
            )


#: Environment the emulator's init hook reads (the same names as the Settings fields).
HOOK_ENV = {
    "RESOURCE_PREFIX": "pubsub",
    "MAX_RECEIVE_COUNT": "5",
    "QUEUE_VISIBILITY_TIMEOUT": "12",
    "EMAIL_SENDER": "orders@example.com",
    "AWS_REGION": "us-east-1",
}


def main() -> None:
    """Apply the topology from the emulator's init hook (`python -m pubsub_supervisor.topology`).

    The hook runs inside the emulator with boto3 but without this project's dependencies,
    so it reads the few settings it needs from the environment itself.
    """
    import os
    import sys

    import boto3

    env = {name: os.environ.get(name) or default for name, default in HOOK_ENV.items()}
    endpoint = (
        os.environ.get("PUBSUB_PROVISION_ENDPOINT")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "http://localhost:4566"
    )
    region = env["AWS_REGION"]
    topology = build_topology(
        prefix=env["RESOURCE_PREFIX"],
        services=registry.SERVICES,
        max_receive_count=int(env["MAX_RECEIVE_COUNT"]),
        visibility_timeout=int(env["QUEUE_VISIBILITY_TIMEOUT"]),
        email_identities=(env["EMAIL_SENDER"],),
    )
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        region_name=region,
    )
    clients = {name: session.client(name, endpoint_url=endpoint) for name in ("sns", "sqs", "ses")}
    account = session.client("sts", endpoint_url=endpoint).get_caller_identity()["Account"]

    def say(line: str) -> None:
        sys.stdout.write(f"[provision] {line}\n")

    changes = apply_topology(
        topology,
        sns=clients["sns"],
        sqs=clients["sqs"],
        ses=clients["ses"],
        arns=Arns(account=account, region=region),
        progress=say,
    )
    say(f"topology applied at {endpoint}: {len(changes)} change(s)")


if __name__ == "__main__":
    main()
