"""The ECS templates are valid RegisterTaskDefinition / CreateService requests (offline).

They are rendered as `envsubst` would, then checked against botocore's own service model
for ECS with its ParamValidator: the same check boto3 and the AWS CLI run before sending.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from pubsub_supervisor.settings import Settings
from scripts import scan_secrets

ROOT = Path(__file__).resolve().parents[2]
ECS = ROOT / "deploy" / "ecs"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
VALUES = {
    "RESOURCE_PREFIX": "pubsub",
    "AWS_REGION": "eu-west-1",
    "EMAIL_SENDER": "orders@example.com",
    "IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pubsub-supervisor:1.0.0",
    "EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/pubsub-execution",
    "TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/pubsub-app",
    "WEB_SECRET_KEY_ARN": "arn:aws:ssm:eu-west-1:123456789012:parameter/pubsub/web-secret-key",
    "OPERATOR_PASSWORD_ARN": (
        "arn:aws:ssm:eu-west-1:123456789012:parameter/pubsub/operator-password"
    ),
    "CLUSTER": "pubsub",
    "SUBNET_ID": "subnet-0abc",
    "SECURITY_GROUP_ID": "sg-0abc",
}
#: Fargate's valid (cpu units, memory MiB range, step) combinations up to 4 vCPU.
FARGATE_SIZES = {
    256: (512, 2048),
    512: (1024, 4096),
    1024: (2048, 8192),
    2048: (4096, 16384),
    4096: (8192, 30720),
}


def render(name: str) -> dict[str, Any]:
    text = (ECS / name).read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(VALUES)
    assert not missing, f"{name}: placeholders without a test value: {missing}"
    rendered: dict[str, Any] = json.loads(PLACEHOLDER.sub(lambda m: VALUES[m.group(1)], text))
    return rendered


def test_envsubst_renders_the_same(tmp_path: Path) -> None:
    # The walk-through renders with envsubst; it must agree with render() above.
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        pytest.skip("envsubst is not installed (apt-get install gettext-base)")
    for name in ("task-definition.json", "service.json"):
        result = subprocess.run(
            [envsubst],
            input=(ECS / name).read_text(),
            env={**VALUES, "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(result.stdout) == render(name)


def validate(operation: str, params: dict[str, Any]) -> str:
    """botocore's validation report for an ECS operation's input ('' when valid)."""
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    report = ParamValidator().validate(params, shape)
    return str(report.generate_report()) if report.has_errors() else ""


@pytest.fixture
def task() -> dict[str, Any]:
    return render("task-definition.json")


@pytest.fixture
def app(task: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = task["containerDefinitions"][0]
    return container


def test_task_definition_is_a_valid_request(task: dict[str, Any]) -> None:
    assert validate("RegisterTaskDefinition", task) == ""


def test_service_is_a_valid_request() -> None:
    assert validate("CreateService", render("service.json")) == ""


def test_validation_catches_a_broken_template(task: dict[str, Any]) -> None:
    # Guards the check itself: a misspelt key and a wrong type are reported.
    task["containerDefinitions"][0]["healthcheck"] = {}
    task["cpu"] = 1024
    report = validate("RegisterTaskDefinition", task)
    assert 'Unknown parameter in containerDefinitions[0]: "healthcheck"' in report
    assert "Invalid type for parameter cpu" in report


def test_fargate_size_is_valid(task: dict[str, Any]) -> None:
    cpu, memory = int(task["cpu"]), int(task["memory"])
    low, high = FARGATE_SIZES[cpu]
    assert low <= memory <= high
    assert memory % 1024 == 0
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"


def test_container_is_configured_only_through_settings(app: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in app["environment"]}
    secrets = {s["name"] for s in app["secrets"]}
    known = {name.upper() for name in Settings.model_fields} | {"AWS_REGION", "ENV_FILE"}
    # WEB_SECRET_KEY signs the web's CSRF cookie; it comes from a secret store, never the file.
    assert set(env) <= known
    assert secrets <= known | {"WEB_SECRET_KEY"}
    # Real AWS: no emulator endpoint, no credentials (the task role provides them).
    assert not {k for k in env | dict.fromkeys(secrets) if k.startswith("AWS_ENDPOINT_URL")}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & (
        set(env) | secrets
    )
    for secret in app["secrets"]:
        assert re.match(r"arn:aws:(ssm|secretsmanager):", secret["valueFrom"])
    assert app["portMappings"][0]["containerPort"] == int(env["WEB_PORT"])
    assert env["WEB_HOST"] == "0.0.0.0"


def test_health_check_probes_healthz_on_the_web_port(app: dict[str, Any]) -> None:
    command = " ".join(app["healthCheck"]["command"])
    port = next(e["value"] for e in app["environment"] if e["name"] == "WEB_PORT")
    assert f"http://127.0.0.1:{port}/healthz" in command
    assert app["healthCheck"]["timeout"] < app["healthCheck"]["interval"]


def test_logs_go_to_cloudwatch(app: dict[str, Any], task: dict[str, Any]) -> None:
    logging = app["logConfiguration"]
    assert logging["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logging["options"])
    assert task["executionRoleArn"]
    assert task["taskRoleArn"]


def test_stop_timeout_covers_supervisords_shutdown(app: dict[str, Any]) -> None:
    parser = configparser.RawConfigParser(strict=False)
    parser.read(ROOT / "supervisord.conf")
    total = sum(
        int(parser.get(section, "stopwaitsecs", fallback="10"))
        for section in parser.sections()
        if section.startswith("program:")
    )
    # Fargate allows at most 120 s; every program must get its full stop time first.
    assert total <= app["stopTimeout"] <= 120


def test_one_task_at_a_time() -> None:
    service = render("service.json")
    # Each task keeps its orders in its own SQLite file: two tasks would split them.
    assert service["desiredCount"] == 1
    assert service["deploymentConfiguration"]["maximumPercent"] == 100
    assert service["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


def test_templates_hold_no_secret_or_account() -> None:
    assert scan_secrets.scan([ECS]) == []
