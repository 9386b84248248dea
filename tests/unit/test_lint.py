"""Each topology rule flags what real AWS rejects, and the project's own definition is clean."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import boto3
import pytest
from moto import mock_aws

from pubsub_ops import lint
from pubsub_ops.lint import Snapshot, Subscription
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns, apply_topology, build_topology, queue_policy

ARNS = Arns(account="123456789012", region="us-east-1")
TOPOLOGY = build_topology(prefix="t", services=("email",), email_identities=("a@example.com",))
EMAIL = ARNS.queue("t-email")
EMAIL_DLQ = ARNS.queue("t-email-dlq")
ORDERS = ARNS.topic("t-order-events")


def clean() -> Snapshot:
    return lint.desired_snapshot(TOPOLOGY, ARNS, message_attribute_count=3)


def with_queue(snapshot: Snapshot, arn: str, **changes: str | None) -> Snapshot:
    """A copy with one queue's attributes changed (None removes one)."""
    merged: dict[str, str | None] = {**snapshot.queues[arn], **changes}
    attributes = {k: v for k, v in merged.items() if v is not None}
    return replace(snapshot, queues={**snapshot.queues, arn: attributes})


def rules_of(snapshot: Snapshot) -> set[str]:
    return {finding.rule for finding in lint.lint(snapshot)}


def messages_of(snapshot: Snapshot, rule: str) -> str:
    return "\n".join(f.describe() for f in lint.lint(snapshot) if f.rule == rule)


def test_the_projects_topology_is_clean() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert lint.lint(lint.desired_snapshot(settings.topology, ARNS, 3)) == []


def test_what_provision_creates_is_clean_when_read_back(aws_env: None) -> None:
    with mock_aws():
        sns, sqs, ses = (boto3.client(n, region_name="us-east-1") for n in ("sns", "sqs", "ses"))
        apply_topology(TOPOLOGY, sns=sns, sqs=sqs, ses=ses, arns=ARNS)
        snapshot, missing = lint.live_snapshot(TOPOLOGY, ARNS, sns=sns, sqs=sqs)
    assert missing == []
    assert lint.lint(snapshot) == []


def test_missing_resources_are_reported(aws_env: None) -> None:
    with mock_aws():
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs")
        _, missing = lint.live_snapshot(TOPOLOGY, ARNS, sns=sns, sqs=sqs)
    assert {f.rule for f in missing} == {"exists"}
    assert {f.resource for f in missing} >= {ORDERS, EMAIL, EMAIL_DLQ}


# -- queue-policy -----------------------------------------------------------------------


def test_missing_queue_policy_is_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL, Policy=None)
    assert "no policy statement lets" in messages_of(snapshot, "queue-policy")


def test_policy_for_another_topic_is_flagged() -> None:
    other = json.dumps(queue_policy(EMAIL, ARNS.topic("someone-elses-topic")))
    assert "queue-policy" in rules_of(with_queue(clean(), EMAIL, Policy=other))


def test_policy_open_to_anyone_is_flagged() -> None:
    policy = queue_policy(EMAIL, ORDERS)
    statement = policy["Statement"][0]
    del statement["Condition"]
    statement["Principal"] = "*"
    snapshot = with_queue(clean(), EMAIL, Policy=json.dumps(policy))
    assert "lets anyone send" in messages_of(snapshot, "queue-policy")


def test_policy_naming_another_queue_is_flagged() -> None:
    policy = json.dumps(queue_policy(ARNS.queue("t-other"), ORDERS))
    snapshot = with_queue(clean(), EMAIL, Policy=policy)
    assert "not this queue" in messages_of(snapshot, "queue-policy")


# -- fifo-match -------------------------------------------------------------------------


def fifo_variant() -> tuple[Snapshot, str, str]:
    """The clean snapshot with the email queue renamed to a FIFO queue (DLQ left standard)."""
    base = clean()
    fifo = EMAIL + ".fifo"
    queues = {k: v for k, v in base.queues.items() if k != EMAIL}
    queues[fifo] = {
        **base.queues[EMAIL],
        "FifoQueue": "true",
        "Policy": json.dumps(queue_policy(fifo, ORDERS)),
    }
    subscriptions = tuple(
        replace(s, queue_arn=fifo) if s.queue_arn == EMAIL else s for s in base.subscriptions
    )
    return replace(base, queues=queues, subscriptions=subscriptions), fifo, EMAIL_DLQ


def test_fifo_queue_with_standard_dlq_is_flagged() -> None:
    snapshot, _fifo, _dlq = fifo_variant()
    assert "must be the same type" in messages_of(snapshot, "fifo-match")


def test_fifo_queue_on_standard_topic_is_flagged() -> None:
    snapshot, _fifo, _dlq = fifo_variant()
    assert "a FIFO topic delivers to FIFO" in messages_of(snapshot, "fifo-match")


def test_fifo_attribute_without_fifo_name_is_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL, FifoQueue="true")
    assert "FifoQueue and the name disagree" in messages_of(snapshot, "fifo-match")


# -- raw-delivery -----------------------------------------------------------------------


def test_non_raw_subscription_is_flagged() -> None:
    base = clean()
    subscriptions = tuple(
        Subscription(s.topic_arn, s.queue_arn, {"RawMessageDelivery": "false"})
        for s in base.subscriptions
    )
    snapshot = replace(base, subscriptions=subscriptions)
    assert "RawMessageDelivery='false'" in messages_of(snapshot, "raw-delivery")


def test_too_many_message_attributes_for_raw_delivery_are_flagged() -> None:
    assert "raw-delivery" in rules_of(replace(clean(), message_attribute_count=11))
    assert "raw-delivery" not in rules_of(replace(clean(), message_attribute_count=10))


# -- limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MessageRetentionPeriod", "1209601"),
        ("MessageRetentionPeriod", "59"),
        ("VisibilityTimeout", "43201"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("DelaySeconds", "901"),
        ("MaximumMessageSize", "1048577"),
        ("VisibilityTimeout", "-1"),
    ],
)
def test_attribute_outside_aws_limits_is_flagged(key: str, value: str) -> None:
    snapshot = with_queue(clean(), EMAIL, **{key: value})
    assert f"{key}={value} is outside" in messages_of(snapshot, "limits")


def test_max_receive_count_outside_limits_is_flagged() -> None:
    redrive = json.dumps({"deadLetterTargetArn": EMAIL_DLQ, "maxReceiveCount": 1001})
    assert "maxReceiveCount=1001" in messages_of(
        with_queue(clean(), EMAIL, RedrivePolicy=redrive), "limits"
    )


def test_dlq_keeping_messages_no_longer_than_its_source_is_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL_DLQ, MessageRetentionPeriod="345600")
    assert "dead letters expire" in messages_of(snapshot, "limits")


# -- redrive ----------------------------------------------------------------------------


def test_redrive_to_a_missing_dlq_is_flagged() -> None:
    snapshot = clean()
    queues = {k: v for k, v in snapshot.queues.items() if k != EMAIL_DLQ}
    assert "does not exist" in messages_of(replace(snapshot, queues=queues), "redrive")


def test_dlq_that_does_not_allow_its_source_is_flagged() -> None:
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [ARNS.queue("x")]})
    snapshot = with_queue(clean(), EMAIL_DLQ, RedriveAllowPolicy=allow)
    assert "does not allow this queue" in messages_of(snapshot, "redrive")
    deny = json.dumps({"redrivePermission": "denyAll"})
    assert "redrive" in rules_of(with_queue(clean(), EMAIL_DLQ, RedriveAllowPolicy=deny))


def test_redrive_allow_policy_with_too_many_sources_is_flagged() -> None:
    sources = [ARNS.queue(f"q{i}") for i in range(10)] + [EMAIL]
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": sources})
    snapshot = with_queue(clean(), EMAIL_DLQ, RedriveAllowPolicy=allow)
    assert "more than 10 sources" in messages_of(snapshot, "redrive")


def test_redrive_policy_that_is_not_json_is_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL, RedrivePolicy="{not json")
    assert "not valid JSON" in messages_of(snapshot, "redrive")


# -- encryption -------------------------------------------------------------------------


def test_unencrypted_queue_is_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL, SqsManagedSseEnabled="false")
    assert "not encrypted" in messages_of(snapshot, "encryption")


def test_both_encryption_schemes_are_flagged() -> None:
    snapshot = with_queue(clean(), EMAIL, KmsMasterKeyId="alias/mine")
    assert "both set" in messages_of(snapshot, "encryption")


def test_aws_managed_kms_key_on_a_subscribed_queue_is_flagged() -> None:
    snapshot = with_queue(
        clean(), EMAIL, SqsManagedSseEnabled="false", KmsMasterKeyId="alias/aws/sqs"
    )
    assert "SNS cannot use" in messages_of(snapshot, "encryption")


# -- names ------------------------------------------------------------------------------


NAME_CASES: list[Callable[[Snapshot], Snapshot]] = [
    lambda s: replace(
        s, queues={**s.queues, ARNS.queue("x" * 81): {"SqsManagedSseEnabled": "true"}}
    ),
    lambda s: replace(
        s, queues={**s.queues, ARNS.queue("bad.name"): {"SqsManagedSseEnabled": "true"}}
    ),
    lambda s: replace(s, topics={**s.topics, ARNS.topic("bad topic"): {}}),
]


@pytest.mark.parametrize("change", NAME_CASES)
def test_names_aws_rejects_are_flagged(change: Callable[[Snapshot], Snapshot]) -> None:
    assert "names" in rules_of(change(clean()))
