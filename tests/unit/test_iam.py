"""The container role's policy allows every call the code makes, and nothing more."""

from __future__ import annotations

import ast
import configparser
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
    modules = program_entry_modules()
    assert modules, "no program found in supervisord.conf"
    return sources_of(modules)


def sources_of(entries: set[str], unfollowed: frozenset[str] = frozenset()) -> list[Path]:
    """Every project file the `entries` modules import, not following `unfollowed`'s imports."""
    seen: set[Path] = set()
    queue = [m for m in entries if m.split(".")[0] in PACKAGES]
    while queue:
        module = queue.pop()
        parts = module.split(".")
        # A package's __init__ runs before any of its modules.
        queue += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_file(module)
        if path is None or path in seen:
            continue
        seen.add(path)
        if module in unfollowed:
            continue
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


def actions_called_by_the_code(files: list[Path] | None = None) -> set[str]:
    """The IAM actions of every AWS operation the runtime code (or `files`) calls."""
    actions: set[str] = set()
    for service in SERVICES:
        model = botocore.session.get_session().get_service_model(service)
        mapping = {xform_name(op): op for op in model.operation_names}
        for path in runtime_callers() if files is None else files:
            for called_service, method in calls_in(path):
                if called_service != service:
                    continue
                assert method in mapping, f"{path}: {service}.{method} is not an operation"
                action = iam.iam_action(service, mapping[method])
                if action is not None:
                    actions.add(action)
    return actions


def program_sources(program: str) -> list[Path]:
    """The files one program imports, from its supervisord command and its registry entry."""
    conf = configparser.RawConfigParser(strict=False)
    conf.read(ROOT / "supervisord.conf")
    command = conf.get(f"program:{program}", "command")
    entries = set(re.findall(r"-m ([\w.]+)", command))
    entries |= set(re.findall(r'"([\w.]+):\w+\(\)"', command))
    unfollowed: frozenset[str] = frozenset()
    if program == "web_worker":
        # The worker applies the services' projections; importing web.worker runs the
        # package's __init__, which defines the Flask app the worker never creates.
        entries |= {s.projection.partition(":")[0] for s in registry.SERVICES if s.projection}
        unfollowed = frozenset({"web"})
    for spec in registry.SERVICES:
        if spec.program == program:
            entries.add(spec.handler.partition(":")[0])
    assert entries, f"no command for {program} in supervisord.conf"
    return [p for p in sources_of(entries, unfollowed) if str(p.relative_to(ROOT)) != PROVISIONING]


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


@pytest.mark.parametrize("program", iam.program_names())
def test_each_programs_policy_allows_exactly_what_its_code_calls(
    program: str, settings: Settings
) -> None:
    policy = iam.program_policy(settings.topology, ARNS, program)
    called = actions_called_by_the_code(program_sources(program))
    assert called, program
    withheld = iam.WITHHELD.get(program, frozenset())
    assert withheld <= called, "withholds something its code does not call"
    assert policy_actions(policy) == called - withheld


def test_program_names_come_from_the_registry() -> None:
    assert iam.program_names() == (
        "web",
        "web_worker",
        *(spec.program for spec in registry.SERVICES),
    )
    conf = configparser.RawConfigParser(strict=False)
    conf.read(ROOT / "supervisord.conf")
    programs = {s.removeprefix("program:") for s in conf.sections() if s.startswith("program:")}
    assert set(iam.program_names()) <= programs


def test_the_web_has_no_ses_and_sends_to_no_queue(settings: Settings) -> None:
    topology = settings.topology
    policy = iam.program_policy(topology, ARNS, "web")
    assert not [a for a in policy_actions(policy) if a.startswith("ses:")]
    for queue in topology.queues:
        for name in (queue.name, queue.dlq_name):
            assert not iam.allows(policy, "sqs:SendMessage", ARNS.queue(name))
            assert not iam.allows(policy, "sqs:DeleteMessage", ARNS.queue(name))
        # It reads dead letters (the DLQ page) and every queue's depth (the dashboard).
        assert iam.allows(policy, "sqs:ReceiveMessage", ARNS.queue(queue.dlq_name))
        assert not iam.allows(policy, "sqs:ReceiveMessage", ARNS.queue(queue.name))
        assert iam.allows(policy, "sqs:GetQueueAttributes", ARNS.queue(queue.name))
    # It publishes each order's event after its commit, and nothing else.
    assert iam.allows(policy, "sns:Publish", ARNS.topic(topology.order_topic))
    assert not iam.allows(policy, "sns:Publish", ARNS.topic(topology.results_topic))


def test_the_worker_publishes_orders_and_consumes_results(settings: Settings) -> None:
    topology = settings.topology
    policy = iam.program_policy(topology, ARNS, "web_worker")
    web = topology.queue_for("web")
    assert iam.allows(policy, "sns:Publish", ARNS.topic(topology.order_topic))
    assert not iam.allows(policy, "sns:Publish", ARNS.topic(topology.results_topic))
    assert iam.allows(policy, "sqs:DeleteMessage", ARNS.queue(web.name))
    assert iam.allows(policy, "sqs:SendMessage", ARNS.queue(web.dlq_name))
    email = topology.queue_for("email")
    assert not iam.allows(policy, "sqs:SendMessage", ARNS.queue(email.name))
    assert not iam.allows(policy, "sqs:ReceiveMessage", ARNS.queue(email.name))
    assert not [a for a in policy_actions(policy) if a.startswith("ses:")]


def test_each_service_touches_only_its_own_queues_and_only_email_sends_mail(
    settings: Settings,
) -> None:
    topology = settings.topology
    sender = {"ses:FromAddress": settings.email_sender}
    identity = ARNS.email_identity(settings.email_sender)
    for spec in registry.SERVICES:
        policy = iam.program_policy(topology, ARNS, spec.program)
        assert iam.allows(policy, "sns:Publish", ARNS.topic(topology.results_topic))
        assert not iam.allows(policy, "sns:Publish", ARNS.topic(topology.order_topic))
        for queue in topology.queues:
            mine = queue.consumer == spec.queue or (
                spec.ses_send_events and queue.consumer == "email-sends"
            )
            assert iam.allows(policy, "sqs:ReceiveMessage", ARNS.queue(queue.name)) == mine
            assert iam.allows(policy, "sqs:SendMessage", ARNS.queue(queue.dlq_name)) == mine
            assert not iam.allows(policy, "sqs:SendMessage", ARNS.queue(queue.name))
        assert iam.allows(policy, "ses:SendEmail", identity, sender) == spec.ses_send_events
    assert [s.name for s in registry.SERVICES if s.ses_send_events] == ["email"]


def test_cli_prints_one_programs_policy_and_refuses_unknown_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV_FILE", "")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    args = ["iam-policy", "--account", "123456789012", "--program"]
    assert cli.main([*args, "inventory_service"]) == cli.EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed == iam.program_policy(
        Settings(_env_file=None, aws_region="eu-west-1").topology,  # type: ignore[call-arg]
        ARNS,
        "inventory_service",
    )
    assert cli.main([*args, "nope"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "no program named 'nope'; valid names: web, web_worker, email_service" in err
    with pytest.raises(KeyError, match="valid names"):
        iam.program_policy(Settings(_env_file=None).topology, ARNS, "nope")  # type: ignore[call-arg]
