"""Every AWS call the running stack makes is allowed by the generated IAM policy.

The stack's programs record each botocore call they make (tests/support/callrecorder);
this test drives an order and a dead-letter through the stack, then checks each recorded
call against `pubsub iam-policy`'s document for the emulator's account.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pubsub_ops import iam
from pubsub_supervisor.clients import arns_for, make_clients
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns
from tests.support.stack import PROGRAMS, Api, wait_for

pytestmark = pytest.mark.integration


def recorded_calls(path: Path) -> list[dict[str, Any]]:
    """Calls made by the stack's programs (not by this test or by provisioning)."""
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [c for c in calls if c.get("program") in PROGRAMS]


def resource_of(
    call: dict[str, Any], settings: Settings, account: str
) -> tuple[str, dict[str, str]]:
    """The ARN a call acts on, and the condition keys IAM would see."""
    arns = Arns(account=account, region=settings.aws_region)
    if "TopicArn" in call:
        return call["TopicArn"], {}
    if "QueueUrl" in call:
        return arns.queue(call["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]), {}
    if "QueueName" in call:
        return arns.queue(call["QueueName"]), {}
    if call["operation"] == "SendEmail":
        return arns.email_identity(call["Source"]), {"ses:FromAddress": call["Source"]}
    raise AssertionError(f"no resource known for {call}")


def test_every_call_the_stack_makes_is_allowed(
    api: Api, stack_settings: Settings, aws_call_log: Path
) -> None:
    clients = make_clients(stack_settings)
    arns = arns_for(clients, stack_settings.aws_region)
    topology = stack_settings.topology

    # An order exercises publish, receive, delete and SES; a poison message the dead-letter path.
    order = api.post_order(
        f"iam-{uuid.uuid4().hex[:8]}@example.com", [{"sku": "KB-001", "quantity": 1}]
    )
    assert order.status_code == 201
    api.wait_settled(order.json()["id"])
    email = topology.queue_for("email")
    clients.sqs.send_message(
        QueueUrl=clients.sqs.get_queue_url(QueueName=email.name)["QueueUrl"],
        MessageBody="not an event",
    )
    wait_for(
        lambda: any(
            c["operation"] == "SendMessage" and c.get("program") == "email_service"
            for c in recorded_calls(aws_call_log)
        ),
        60,
        "email_service to dead-letter the poison message",
        interval=0.5,
    )

    policy = iam.runtime_policy(topology, arns)
    calls = recorded_calls(aws_call_log)
    operations = {(c["service"], c["operation"]) for c in calls}
    # The recorder saw the stack at work; otherwise the check below would prove nothing.
    assert {
        # The web's and the relay's events and the services' results: all in batches.
        ("sns", "PublishBatch"),
        ("sqs", "ReceiveMessage"),
        ("sqs", "DeleteMessageBatch"),
        ("sqs", "SendMessage"),
        ("ses", "SendEmail"),
    } <= operations
    denied = []
    for call in calls:
        action = iam.iam_action(call["service"], call["operation"])
        if action is None:
            continue
        resource, context = resource_of(call, stack_settings, arns.account)
        if not iam.allows(policy, action, resource, context):
            denied.append(f"{call['program']}: {action} on {resource}")
    assert denied == [], "\n".join(sorted(set(denied)))
