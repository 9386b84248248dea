"""The generated messaging stack, deployed through the emulator's CloudFormation engine.

One test walks the stack's life as an operator would: create it (with its own prefix,
apart from the one the emulator's init hook provisions), run an order through the
programs configured with that prefix, find no drift with `pubsub provision --check`,
update it with a changed setting and see the queue change, and delete it. What an
engine cannot create is skipped with the reason (docs/emulator-parity.md lists it).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from pubsub_ops import cloudformation
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Change
from tests.support.emulators import Emulator
from tests.support.fixtures import settings_for, stack_environment
from tests.support.stack import VENV, Api, SupervisedStack, wait_for

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef

pytestmark = pytest.mark.integration

#: Engines whose stack updates leave a queue's attributes as they were (parity doc).
UPDATES_NOT_APPLIED = {"moto"}
#: Resources an engine may report created without creating them, filled in by provisioning.
SES_KINDS = {"configuration set", "event destination", "email identity"}


def template(env: dict[str, str], max_receive_count: int) -> str:
    """The messaging template for the programs' settings, with one MAX_RECEIVE_COUNT."""
    settings = settings_for({**env, "MAX_RECEIVE_COUNT": str(max_receive_count)})
    return cloudformation.render(settings, "messaging")


class Stacks:
    """A CloudFormation client that waits for each change to finish, with a deadline."""

    def __init__(self, endpoint_url: str) -> None:
        self.cf = boto3.client(
            "cloudformation",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def status(self, name: str) -> dict[str, Any] | None:
        """The stack's description, or None once it is gone."""
        try:
            stacks = self.cf.describe_stacks(StackName=name)["Stacks"]
        except self.cf.exceptions.ClientError as error:
            if "does not exist" in str(error):
                return None
            raise
        return dict(stacks[0]) if stacks else None

    def settle(self, name: str, timeout: float = 120) -> dict[str, Any] | None:
        """Wait until no change is in progress; fail with the stack's failed resources."""

        def done() -> tuple[dict[str, Any] | None] | None:
            stack = self.status(name)
            if stack is not None and stack["StackStatus"].endswith("_IN_PROGRESS"):
                return None
            return (stack,)

        (stack,) = wait_for(done, timeout, f"stack {name} to settle", interval=0.5)
        return stack

    def failures(self, name: str) -> list[str]:
        """Each failed resource, with its reason."""
        events = self.cf.describe_stack_events(StackName=name)["StackEvents"]
        return [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in events
            if e["ResourceStatus"].endswith("FAILED")
        ]


def parameters(prefix: str, sender: str) -> list[ParameterTypeDef]:
    # The sender's identity is verified through SES beforehand (as on an account where it
    # already exists): no emulator's engine creates AWS::SES::EmailIdentity.
    return [
        {"ParameterKey": "ResourcePrefix", "ParameterValue": prefix},
        {"ParameterKey": "EmailSender", "ParameterValue": sender},
        {"ParameterKey": "VerifySender", "ParameterValue": "false"},
    ]


@pytest.fixture
def stack_name() -> str:
    """A fresh stack name (also its resource prefix)."""
    return f"cfn-{uuid.uuid4().hex[:8]}"


def test_messaging_stack_lifecycle(emulator: Emulator, stack_name: str, tmp_path: Path) -> None:
    stacks = Stacks(emulator.endpoint_url)
    gaps: list[str] = []
    sender = f"{stack_name}@example.com"
    env = stack_environment(
        emulator.endpoint_url,
        tmp_path / "data",
        RESOURCE_PREFIX=stack_name,
        EMAIL_SENDER=sender,
        CONSUMER_WAIT_SECONDS="2",
    )
    settings = settings_for(env)
    clients = make_clients(settings)
    clients.ses.verify_email_identity(EmailAddress=sender)
    try:
        stacks.cf.create_stack(
            StackName=stack_name,
            TemplateBody=template(env, 5),
            Parameters=parameters(stack_name, sender),
        )
    except stacks.cf.exceptions.ClientError as error:
        pytest.skip(f"{emulator.kind} has no CloudFormation engine: {error}")
    try:
        created = stacks.settle(stack_name)
        assert created is not None
        assert created["StackStatus"] == "CREATE_COMPLETE", stacks.failures(stack_name)

        # Every queue and topic the programs name exists, made by the stack.
        topology = settings.topology
        outputs = {o["OutputKey"]: o["OutputValue"] for o in created.get("Outputs", [])}
        for spec in topology.queues:
            url = clients.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
            # moto's engine names AWS's host in its outputs: compare the queue, not the host.
            output = outputs[cloudformation.logical_id(spec.consumer, "QueueUrl")]
            assert output.rsplit("/", 2)[1:] == url.rsplit("/", 2)[1:]
            redrive = clients.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["RedrivePolicy"]
            )["Attributes"]["RedrivePolicy"]
            assert json.loads(redrive)["maxReceiveCount"] == 5

        # What the engine reported created but did not create: `pubsub provision --dry-run`
        # lists it (docs/emulator-parity.md). Provisioning fills it in, so the rest of the
        # walk still runs; what is not SES's is reported as a skip at the end.
        missing = [
            change
            for change in provision_changes(settings, dry_run=True)
            if not change.detail or not set(change.detail) <= emulator.dropped_attributes
        ]
        gaps = [c.describe().splitlines()[0] for c in missing if c.kind not in SES_KINDS]
        if missing:
            print(f"{emulator.kind}: filled in by provisioning:", *(c.describe() for c in missing))
            provision_changes(settings, dry_run=False)

        # An order runs through the stack's own queues and topics.
        programs = SupervisedStack(tmp_path / "stack", env)
        # Generous: this stack starts (and migrates fresh stores) while the emulator is busy.
        programs.start(timeout=180)
        try:
            api = Api(programs.base_url)
            buyer = f"buyer-{uuid.uuid4().hex[:12]}@example.com"
            response = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}])
            assert response.status_code == 201, response.text
            order = api.wait_settled(response.json()["id"], timeout=60)
            assert order["status"] == "processed", order
            wait_for(lambda: emulator.sent_emails(buyer), 20, f"an email to {buyer}")
        finally:
            programs.stop()

        # No drift: the live resources are what the topology defines.
        check = subprocess.run(
            [str(VENV / "bin" / "pubsub"), "provision", "--check"],
            env={**os.environ, **env, "ENV_FILE": ""},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        # An update with a changed setting reaches the queues.
        stacks.cf.update_stack(
            StackName=stack_name,
            TemplateBody=template(env, 3),
            Parameters=parameters(stack_name, sender),
        )
        updated = stacks.settle(stack_name)
        assert updated is not None
        assert updated["StackStatus"] == "UPDATE_COMPLETE", stacks.failures(stack_name)
        unchanged = []
        for spec in topology.queues:
            url = clients.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
            attributes = clients.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["RedrivePolicy"]
            )["Attributes"]
            redrive = json.loads(attributes["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"].endswith(f":{spec.dlq_name}")
            if redrive["maxReceiveCount"] != 3:
                unchanged.append(spec.name)
        if emulator.kind in UPDATES_NOT_APPLIED:
            # Reports UPDATE_COMPLETE but leaves the queues as they were.
            gaps += [f"update queue {name} (RedrivePolicy)" for name in unchanged]
        else:
            assert unchanged == []
    finally:
        stacks.cf.delete_stack(StackName=stack_name)
        deleted = stacks.settle(stack_name)

    # Deleted cleanly: the stack and every queue and topic it made are gone.
    assert deleted is None or deleted["StackStatus"] == "DELETE_COMPLETE"
    left = clients.sqs.list_queues(QueueNamePrefix=stack_name).get("QueueUrls", [])
    assert left == []
    topics = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]]
    assert not [t for t in topics if t.rsplit(":", 1)[1].startswith(f"{stack_name}-")]
    if gaps:
        pytest.skip(
            f"{emulator.kind}'s CloudFormation engine did not create {len(gaps)} part(s), "
            f"filled in by provisioning before the orders ran: {gaps}"
        )


def provision_changes(settings: Settings, *, dry_run: bool) -> list[Change]:
    """What `pubsub provision` changes (or would) for these settings."""
    return provision(settings, dry_run=dry_run, progress=lambda _line: None)
