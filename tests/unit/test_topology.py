"""The topology: names, policies, and an idempotent apply (against moto's mock AWS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import (
    DLQ_RETENTION_SECONDS,
    HOOK_ENV,
    Arns,
    Topology,
    apply_topology,
    build_topology,
)

ARNS = Arns(account="123456789012", region="us-east-1")


@pytest.fixture
def topology() -> Topology:
    return build_topology(
        prefix="t", services=("email", "inventory"), email_identities=("a@example.com",)
    )


@pytest.fixture
def clients(aws_env: None) -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield {name: boto3.client(name, region_name="us-east-1") for name in ("sns", "sqs", "ses")}


def apply(topology: Topology, clients: dict[str, Any], *, dry_run: bool = False) -> list[Any]:
    return apply_topology(topology, **clients, arns=ARNS, dry_run=dry_run)


def test_names_come_from_one_prefix(topology: Topology) -> None:
    assert topology.topics == ("t-order-events", "t-order-results", "t-email-sends")
    assert [q.name for q in topology.queues] == ["t-email", "t-inventory", "t-web", "t-email-sends"]
    assert topology.queue_for("web").topic == "t-order-results"
    assert topology.queue_for("email").dlq_name == "t-email-dlq"
    # SES reports each confirmation it accepted through the configuration set.
    assert topology.configuration_set == "t-email"
    assert topology.queue_for("email-sends").topic == "t-email-sends"


def test_without_email_there_is_no_send_events_queue() -> None:
    topology = build_topology(prefix="t", services=("inventory",))
    assert topology.topics == ("t-order-events", "t-order-results")
    assert topology.configuration_set is None
    assert [q.name for q in topology.queues] == ["t-inventory", "t-web"]


def test_apply_creates_everything_then_changes_nothing(
    topology: Topology, clients: dict[str, Any]
) -> None:
    first = apply(topology, clients)
    kinds = sorted({(c.action, c.kind) for c in first})
    assert kinds == [
        ("create", "configuration set"),
        ("create", "email identity"),
        ("create", "event destination"),
        ("create", "queue"),
        ("create", "subscription"),
        ("create", "topic"),
    ]
    # moto drops RedriveAllowPolicy (LocalStack and AWS keep it; the integration suite
    # checks full idempotence there), so only that attribute may still show as drift.
    again = apply(topology, clients)
    assert [set(c.detail) for c in again] == [{"RedriveAllowPolicy"}] * len(again)


def test_queue_has_dlq_policy_and_raw_subscription(
    topology: Topology, clients: dict[str, Any]
) -> None:
    apply(topology, clients)
    sqs, sns = clients["sqs"], clients["sns"]
    url = sqs.get_queue_url(QueueName="t-email")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":t-email-dlq")
    assert int(redrive["maxReceiveCount"]) == 5
    policy = json.loads(attrs["Policy"])["Statement"][0]
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"] == ARNS.topic("t-order-events")
    assert policy["Action"] == "sqs:SendMessage"
    dlq = sqs.get_queue_url(QueueName="t-email-dlq")["QueueUrl"]
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(dlq_attrs["MessageRetentionPeriod"]) == DLQ_RETENTION_SECONDS
    subs = sns.list_subscriptions_by_topic(TopicArn=ARNS.topic("t-order-events"))["Subscriptions"]
    assert {s["Endpoint"] for s in subs} == {ARNS.queue("t-email"), ARNS.queue("t-inventory")}
    for sub in subs:
        sub_attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
        assert sub_attrs["Attributes"]["RawMessageDelivery"] == "true"


def test_drift_is_repaired(topology: Topology, clients: dict[str, Any]) -> None:
    apply(topology, clients)
    sqs = clients["sqs"]
    url = sqs.get_queue_url(QueueName="t-inventory")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5"})
    changes = {c.name: c for c in apply(topology, clients) if c.action == "update"}
    assert changes["t-inventory"].detail["VisibilityTimeout"] == "12"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "12"


def test_dry_run_lists_creations_and_creates_nothing(
    topology: Topology, clients: dict[str, Any]
) -> None:
    changes = apply(topology, clients, dry_run=True)
    assert {c.name for c in changes if c.kind == "queue"} == {
        "t-email",
        "t-email-dlq",
        "t-inventory",
        "t-inventory-dlq",
        "t-web",
        "t-web-dlq",
        "t-email-sends",
        "t-email-sends-dlq",
    }
    assert {(c.kind, c.name) for c in changes if c.kind.startswith(("config", "event"))} == {
        ("configuration set", "t-email"),
        ("event destination", "t-email"),
    }
    described = "\n".join(c.describe() for c in changes)
    assert "aws:SourceArn" in described  # the policy is shown, not just the name
    assert clients["sqs"].list_queues().get("QueueUrls", []) == []
    assert clients["sns"].list_topics()["Topics"] == []
    assert clients["ses"].list_configuration_sets()["ConfigurationSets"] == []


def test_configuration_set_publishes_send_events_to_its_topic(
    topology: Topology, clients: dict[str, Any]
) -> None:
    apply(topology, clients)
    described = clients["ses"].describe_configuration_set(
        ConfigurationSetName="t-email", ConfigurationSetAttributeNames=["eventDestinations"]
    )
    [destination] = described["EventDestinations"]
    assert destination["SNSDestination"]["TopicARN"] == ARNS.topic("t-email-sends")
    assert [t.lower() for t in destination["MatchingEventTypes"]] == ["send"]
    assert destination["Enabled"] is True


def test_hook_reads_the_same_names_as_the_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(HOOK_ENV) <= fields | {"AWS_REGION"}
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert HOOK_ENV["RESOURCE_PREFIX"] == defaults.resource_prefix
    assert int(HOOK_ENV["MAX_RECEIVE_COUNT"]) == defaults.max_receive_count
    assert int(HOOK_ENV["QUEUE_VISIBILITY_TIMEOUT"]) == defaults.queue_visibility_timeout
    assert HOOK_ENV["EMAIL_SENDER"] == defaults.email_sender
