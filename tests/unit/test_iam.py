"""The container role's policy allows every call the code makes, and nothing more."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from pubsub_ops import cli, iam
from pubsub_supervisor import registry
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns

ROOT = Path(__file__).resolve().parents[2]
ARNS = Arns(account="123456789012", region="eu-west-1")
SERVICES = ("sns", "sqs", "ses", "sts")
PACKAGES = ("pubsub_supervisor", "web", "services")
#: Imported by the programs for names and ARNs, but its AWS calls are provisioning
#: (`apply_topology`), which runs with the operator's credentials, never the task role.
PROVISIONING = "pubsub_supervisor/topology.py"


def program_entry_modules() -> set[str]:
    """The modules supervisord starts (`python -m X`, gunicorn's `X:create_app()`)."""
    conf = (ROOT / "supervisord.conf").read_text()
    commands = re.findall(r"^command=(.*)$", conf, flags=re.MULTILINE)
    modules = {m for c in commands for m in re.findall(r"-m ([\w.]+)", c)}
    modules |= {m for c in commands for m in re.findall(r'"([\w.]+):\w+\(\)"', c)}
    # `python -m services NAME` imports the handler and projection its registry entry names.
    for spec in registry.SERVICES:
        modules |= {p.partition(":")[0] for p in (spec.handler, spec.projection) if p}
    return modules


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py", base / "__main__.py"):
        if candidate.exists():
            return candidate
    return None


def runtime_sources() -> list[Path]:
    """Every project file the container's programs import (operator tools are not in it)."""
    seen: set[Path] = set()
    queue = [m for m in program_entry_modules() if m.split(".")[0] in PACKAGES]
    assert queue, "no program found in supervisord.conf"
    while queue:
        module = queue.pop()
        parts = module.split(".")
        # A package's __init__ runs before any of its modules.
        queue += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_file(module)
        if path is None or path in seen:
            continue
        seen.add(path)
        if path.name == "__init__.py" and (path.parent / "__main__.py").exists():
            queue.append(f"{module}.__main__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                queue += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                queue.append(node.module)
                queue += [f"{node.module}.{alias.name}" for alias in node.names]
    return sorted(p for p in seen if p.relative_to(ROOT).parts[0] in PACKAGES)


def runtime_callers() -> list[Path]:
    """The runtime files whose AWS calls the task role must allow."""
    return [p for p in runtime_sources() if str(p.relative_to(ROOT)) != PROVISIONING]


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
        for path in runtime_callers():
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


def test_runtime_code_is_what_the_programs_import() -> None:
    files = {str(p.relative_to(ROOT)) for p in runtime_sources()}
    assert {"web/api.py", "web/outbox.py", "pubsub_supervisor/runtime/consumer.py"} <= files
    assert "services/email/handler.py" in files
    # The operator's command line (`pubsub provision`...) is not part of it; the DLQ
    # module is, since the web's DLQ page reads and redrives dead letters.
    assert "pubsub_ops/cli.py" not in files
    assert "pubsub_supervisor/dlq.py" in files


def test_programs_never_provision() -> None:
    # Why the provisioning module's calls are left out of the task role.
    for path in runtime_callers():
        assert "apply_topology" not in path.read_text(), path


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
        | {ARNS.configuration_set(topology.configuration_set or "")}
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
    # Confirmations go out with the stack's configuration set (SES checks it too); SES,
    # not the programs, publishes to the send-events topic.
    assert topology.configuration_set
    assert topology.email_sends_topic
    configuration_set = ARNS.configuration_set(topology.configuration_set)
    assert iam.allows(policy, "ses:SendEmail", configuration_set, sender)
    assert not iam.allows(policy, "sns:Publish", ARNS.topic(topology.email_sends_topic))
    assert iam.allows(
        policy, "sqs:ReceiveMessage", ARNS.queue(topology.queue_for("email-sends").name)
    )
    # The web's DLQ page reads dead letters and redrives them to their source queue;
    # nothing may purge a queue or change a queue's definition.
    assert iam.allows(policy, "sqs:ReceiveMessage", dlq)
    assert iam.allows(policy, "sqs:DeleteMessage", dlq)
    assert iam.allows(policy, "sqs:SendMessage", queue)
    assert not iam.allows(policy, "sqs:PurgeQueue", queue)
    assert not iam.allows(policy, "sqs:PurgeQueue", dlq)
    assert not iam.allows(policy, "sqs:SetQueueAttributes", queue)
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
