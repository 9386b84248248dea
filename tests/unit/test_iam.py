"""The container role's policy allows every call the code makes, and nothing more."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from pubsub_supervisor import cli, iam
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns

ROOT = Path(__file__).resolve().parents[2]
ARNS = Arns(account="123456789012", region="eu-west-1")
SERVICES = ("sns", "sqs", "ses", "sts")
#: Modules that run with the operator's credentials, never in the container's role.
OPERATOR_MODULES = {
    "pubsub_supervisor/topology.py",  # provisioning
    "pubsub_supervisor/lint.py",  # `pubsub provision --check`
    "pubsub_supervisor/cli.py",
    "pubsub_supervisor/emulator.py",  # development only
}


def runtime_sources() -> list[Path]:
    files = [p for d in ("web", "services", "pubsub_supervisor") for p in (ROOT / d).rglob("*.py")]
    return [p for p in files if str(p.relative_to(ROOT)) not in OPERATOR_MODULES]


def calls_in(path: Path) -> set[tuple[str, str]]:
    """(service, method) for every `<x>.sqs.method(...)`-style call in a file."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
        if name in SERVICES:
            found.add((name, node.func.attr))
    return found


def actions_called_by_the_code() -> set[str]:
    """The IAM actions of every AWS operation the runtime code calls."""
    actions: set[str] = set()
    for service in SERVICES:
        model = botocore.session.get_session().get_service_model(service)
        mapping = {xform_name(op): op for op in model.operation_names}
        for path in runtime_sources():
            for called_service, method in calls_in(path):
                if called_service != service:
                    continue
                assert method in mapping, f"{path}: {service}.{method} is not an operation"
                action = iam.iam_action(service, mapping[method])
                if action is not None:
                    actions.add(action)
    return actions


@pytest.fixture
def policy(settings: Settings) -> dict[str, object]:
    return iam.runtime_policy(settings.topology, ARNS)


def policy_actions(policy: dict[str, object]) -> set[str]:
    statements = policy["Statement"]
    assert isinstance(statements, list)
    return {a for s in statements for a in s["Action"]}


def test_scanner_finds_the_calls_we_know_of() -> None:
    # Guards the scan itself: if it found nothing, the next test would prove nothing.
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sns:Publish", "ses:SendEmail"} <= (
        actions_called_by_the_code()
    )


def test_policy_allows_exactly_the_actions_the_code_calls(policy: dict[str, object]) -> None:
    assert policy_actions(policy) == actions_called_by_the_code()


def test_no_wildcards_and_only_own_resources(policy: dict[str, object], settings: Settings) -> None:
    topology = settings.topology
    own = (
        {ARNS.topic(t) for t in topology.topics}
        | {ARNS.queue(q.name) for q in topology.queues}
        | {ARNS.queue(q.dlq_name) for q in topology.queues}
        | {ARNS.email_identity(settings.email_sender)}
        | {ARNS.email_identity(settings.email_sender.rpartition("@")[2])}
    )
    statements = policy["Statement"]
    assert isinstance(statements, list)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert all("*" not in a for a in statement["Action"])
        assert all("*" not in r for r in statement["Resource"])
        assert set(statement["Resource"]) <= own
    assert ":eu-west-1:123456789012:" in json.dumps(policy)


def test_each_resource_gets_only_what_its_role_needs(
    policy: dict[str, object], settings: Settings
) -> None:
    topology = settings.topology
    email = topology.queue_for("email")
    queue, dlq = ARNS.queue(email.name), ARNS.queue(email.dlq_name)
    sender = {"ses:FromAddress": settings.email_sender}
    identity = ARNS.email_identity(settings.email_sender)

    assert iam.allows(policy, "sqs:ReceiveMessage", queue)
    assert iam.allows(policy, "sqs:SendMessage", dlq)
    assert iam.allows(policy, "sns:Publish", ARNS.topic(topology.results_topic))
    assert iam.allows(policy, "ses:SendEmail", identity, sender)
    # Consumers never send to a source queue (only SNS does) nor read a DLQ.
    assert not iam.allows(policy, "sqs:SendMessage", queue)
    assert not iam.allows(policy, "sqs:ReceiveMessage", dlq)
    assert not iam.allows(policy, "sqs:DeleteMessage", dlq)
    assert not iam.allows(policy, "sqs:PurgeQueue", queue)
    assert not iam.allows(policy, "sqs:ReceiveMessage", ARNS.queue("someone-elses-queue"))
    assert not iam.allows(policy, "sns:Publish", ARNS.topic("someone-elses-topic"))
    assert not iam.allows(policy, "sns:Subscribe", ARNS.topic(topology.order_topic))
    # Email goes out only as the configured sender.
    assert not iam.allows(policy, "ses:SendEmail", identity, {"ses:FromAddress": "x@example.com"})
    assert not iam.allows(policy, "ses:SendEmail", identity)
    assert not iam.allows(policy, "ses:SendRawEmail", identity, sender)


@pytest.mark.parametrize(
    ("service", "operation", "action"),
    [
        ("sqs", "DeleteMessageBatch", "sqs:DeleteMessage"),
        ("sqs", "ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"),
        ("sns", "PublishBatch", "sns:Publish"),
        ("sqs", "ReceiveMessage", "sqs:ReceiveMessage"),
        ("sts", "GetCallerIdentity", None),
    ],
)
def test_operations_map_to_their_iam_action(
    service: str, operation: str, action: str | None
) -> None:
    assert iam.iam_action(service, operation) == action


def test_cli_prints_the_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("ENV_FILE", "")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert cli.main(["iam-policy", "--account", "123456789012"]) == cli.EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed == iam.runtime_policy(
        Settings(_env_file=None, aws_region="eu-west-1").topology,  # type: ignore[call-arg]
        ARNS,
    )
