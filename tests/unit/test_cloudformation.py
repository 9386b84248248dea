"""The generated CloudFormation templates: cfn-lint clean, and equal to the topology.

The templates are resolved here as CloudFormation would resolve them for one prefix,
sender, account and region, then compared with what `pubsub provision` and
`pubsub iam-policy` produce for the same settings, so the two cannot drift apart.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from pubsub_ops import cli, cloudformation, iam
from pubsub_supervisor import registry
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns, desired_queue_attributes, queue_policy
from scripts import scan_secrets

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "shop-prod"
SENDER = "orders@shop.example"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}
ARNS = Arns(account=ACCOUNT, region=REGION)


def settings(**values: Any) -> Settings:
    return Settings.model_validate(
        {"resource_prefix": PREFIX, "email_sender": SENDER, "max_receive_count": 7, **values}
    )


def template(stack: str, **values: Any) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(cloudformation.render(settings(**values), stack))
    return rendered


def resolve(value: Any, names: dict[str, str]) -> Any:
    """`value` with Ref, Fn::Sub and Fn::GetAtt evaluated (resources become `<Id>` markers)."""
    if isinstance(value, list):
        return [resolve(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return names.get(value["Ref"], f"<{value['Ref']}>")
    if set(value) == {"Fn::GetAtt"}:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return resolve(text, names).split(separator)
    if set(value) == {"Fn::Select"}:
        index, items = value["Fn::Select"]
        return resolve(items, names)[index]
    if set(value) == {"Fn::Sub"}:
        text, local = value["Fn::Sub"], {}
        if isinstance(text, list):
            text, local = text[0], {k: resolve(v, names) for k, v in text[1].items()}
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: {**names, **local}[m.group(1)], text)
    return {key: resolve(item, names) for key, item in value.items()}


def resolved_resources(stack: str, **values: Any) -> dict[str, Any]:
    names = {
        **PSEUDO,
        cloudformation.PREFIX: PREFIX,
        cloudformation.SENDER: SENDER,
        "WebSecretKeyParameter": f"/{PREFIX}/web-secret-key",
        "OperatorPasswordParameter": f"/{PREFIX}/operator-password",
        "DatabaseUrlParameter": f"/{PREFIX}/database-url",
    }
    resources: dict[str, Any] = resolve(template(stack, **values)["Resources"], names)
    return resources


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in resources.items() if r["Type"] == kind}


def queue_attributes(properties: dict[str, Any]) -> dict[str, str]:
    """An `AWS::SQS::Queue`'s properties as SQS reports them as attributes."""
    attributes = {}
    for key, value in properties.items():
        if key == "QueueName":
            continue
        if isinstance(value, bool):
            attributes[key] = "true" if value else "false"
        elif isinstance(value, dict):
            attributes[key] = json.dumps(value)
        else:
            attributes[key] = str(value)
    return attributes


@pytest.mark.parametrize("stack", cloudformation.STACKS)
def test_cfn_lint_passes(stack: str) -> None:
    text = cloudformation.render(settings(), stack)
    matches = lint(text, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


def test_cfn_lint_catches_a_broken_template() -> None:
    # Guards the check itself: a misspelt property is reported.
    broken = template("messaging")
    queue = next(r for r in broken["Resources"].values() if r["Type"] == "AWS::SQS::Queue")
    queue["Properties"]["VisibilityTimout"] = 30
    assert lint(json.dumps(broken), config=ManualArgs(regions=["us-east-1"]))


@pytest.mark.parametrize("visibility_timeout", [30, 45])
def test_every_queue_and_dlq_is_the_topologys(visibility_timeout: int) -> None:
    resources = resolved_resources("messaging", queue_visibility_timeout=visibility_timeout)
    queues = {p["QueueName"]: p for p in of_type(resources, "AWS::SQS::Queue").values()}
    topology = settings(queue_visibility_timeout=visibility_timeout).topology
    wanted: dict[str, dict[str, str]] = {}
    for spec in topology.queues:
        wanted |= desired_queue_attributes(spec, ARNS)
    assert set(queues) == set(wanted)
    for name, attributes in wanted.items():
        expected = {k: v for k, v in attributes.items() if k != "Policy"}
        got = queue_attributes(queues[name])
        assert {k: json.loads(v) if v[:1] == "{" else v for k, v in got.items()} == {
            k: json.loads(v) if v[:1] == "{" else v for k, v in expected.items()
        }, name
    for spec in topology.queues:
        redrive = queues[spec.name]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == 7
        assert queues[spec.name]["VisibilityTimeout"] == visibility_timeout


def test_queue_policies_and_raw_subscriptions_match_the_topology() -> None:
    raw = template("messaging")["Resources"]
    resources = resolved_resources("messaging")
    by_id = {
        k: r["Properties"]["QueueName"]
        for k, r in resources.items()
        if r["Type"] == "AWS::SQS::Queue"
    }
    topics = {
        k: r["Properties"]["TopicName"] for k, r in resources.items() if "SNS::Topic" in r["Type"]
    }
    policies = {
        by_id[p["Queues"][0].strip("<>")]: p["PolicyDocument"]
        for p in of_type(resources, "AWS::SQS::QueuePolicy").values()
    }
    subscriptions = {
        (topics[p["TopicArn"].strip("<>")], by_id[p["Endpoint"].strip("<>").split(".")[0]]): p
        for p in of_type(resources, "AWS::SNS::Subscription").values()
    }
    topology = settings().topology
    assert set(topics.values()) == set(topology.topics)
    assert len(policies) == len(subscriptions) == len(topology.queues)
    for spec in topology.queues:
        assert policies[spec.name] == queue_policy(ARNS.queue(spec.name), ARNS.topic(spec.topic))
        subscription = subscriptions[(spec.topic, spec.name)]
        assert subscription["Protocol"] == "sqs"
        assert subscription["RawMessageDelivery"] is True
        # The topology has no filter policy: every queue gets every event of its topic.
        assert "FilterPolicy" not in subscription
    assert "FilterPolicy" not in json.dumps(raw)


def test_ses_configuration_set_publishes_send_events() -> None:
    resources = resolved_resources("messaging")
    topology = settings().topology
    (config,) = of_type(resources, "AWS::SES::ConfigurationSet").values()
    assert config["Name"] == topology.configuration_set
    (destination,) = of_type(resources, "AWS::SES::ConfigurationSetEventDestination").values()
    event = destination["EventDestination"]
    assert event["MatchingEventTypes"] == ["send"]
    assert event["Enabled"] is True
    sends_topic = event["SnsDestination"]["TopicARN"].strip("<>")
    assert resources[sends_topic]["Properties"]["TopicName"] == topology.email_sends_topic
    (identity,) = of_type(resources, "AWS::SES::EmailIdentity").values()
    assert identity["EmailIdentity"] == SENDER


def test_outputs_give_every_queue_url_and_topic_arn() -> None:
    outputs = template("messaging")["Outputs"]
    topology = settings().topology
    for spec in topology.queues:
        assert cloudformation.logical_id(spec.consumer, "QueueUrl") in outputs
        assert cloudformation.logical_id(spec.consumer, "DeadLetterQueueUrl") in outputs
    for topic in topology.topics:
        assert cloudformation.logical_id(topic.removeprefix(f"{PREFIX}-"), "TopicArn") in outputs


def test_parameters_default_to_the_settings() -> None:
    parameters = template("messaging")["Parameters"]
    assert parameters[cloudformation.PREFIX]["Default"] == PREFIX
    assert parameters[cloudformation.SENDER]["Default"] == SENDER
    assert re.fullmatch(parameters[cloudformation.PREFIX]["AllowedPattern"], PREFIX)


def task_roles(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each task definition's container name, with its task role's one policy."""
    found = {}
    for task in of_type(resources, "AWS::ECS::TaskDefinition").values():
        role = task["TaskRoleArn"].strip("<>").removesuffix(".Arn")
        (policy,) = resources[role]["Properties"]["Policies"]
        found[task["ContainerDefinitions"][0]["Name"]] = policy["PolicyDocument"]
    return found


def test_all_in_one_task_role_is_the_runtime_policy() -> None:
    roles = task_roles(resolved_resources("ecs"))
    assert roles == {"app": iam.runtime_policy(settings().topology, ARNS)}


def test_each_program_has_its_own_role_service_and_policy() -> None:
    resources = resolved_resources("ecs-per-program")
    roles = task_roles(resources)
    topology = settings().topology
    assert roles == {
        program.replace("_", "-"): iam.program_policy(topology, ARNS, program)
        for program in iam.program_names()
    }
    services = of_type(resources, "AWS::ECS::Service")
    assert len(services) == len(iam.program_names())


def test_each_service_scales_on_its_queues_backlog_per_task() -> None:
    resources = resolved_resources("ecs-per-program")
    targets = of_type(resources, "AWS::ApplicationAutoScaling::ScalableTarget")
    policies = of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert len(targets) == len(policies) == len(registry.SERVICES)
    topology = settings().topology
    scaled = set()
    for policy in policies.values():
        assert policy["PolicyType"] == "TargetTrackingScaling"
        metrics = policy["TargetTrackingScalingPolicyConfiguration"][
            "CustomizedMetricSpecification"
        ]
        by_id = {m["Id"]: m for m in metrics["Metrics"]}
        (visible,) = by_id["visible"]["MetricStat"]["Metric"]["Dimensions"]
        scaled.add(visible["Value"])
        assert by_id["backlog_per_task"]["Expression"] == "visible / tasks"
        assert [m["Id"] for m in metrics["Metrics"] if m["ReturnData"]] == ["backlog_per_task"]
    assert scaled == {topology.queue_for(s.queue).name for s in registry.SERVICES}


@pytest.mark.parametrize("stack", ["ecs", "ecs-per-program"])
def test_containers_are_configured_only_through_settings(stack: str) -> None:
    resources = resolved_resources(stack, queue_visibility_timeout=45)
    known = {name.upper() for name in Settings.model_fields} | {"AWS_REGION", "ENV_FILE"}
    known.add("DATABASE_URL")  # the `database` field's name in the environment
    for task in of_type(resources, "AWS::ECS::TaskDefinition").values():
        (container,) = task["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
        assert set(env) <= known
        # WEB_SECRET_KEY signs the web's CSRF cookie; secrets come from SSM, never the file.
        assert set(secrets) <= known | {"WEB_SECRET_KEY"}
        assert {"WEB_SECRET_KEY", "OPERATOR_PASSWORD"} <= set(secrets)
        assert all(
            v.startswith(f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/") for v in secrets.values()
        )
        # Real AWS: no emulator endpoint, no keys (the task role provides them).
        assert not [k for k in (*env, *secrets) if k.startswith("AWS_ENDPOINT_URL")]
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & (set(env) | set(secrets))
        # The programs agree with the queues the template was generated with.
        assert env["RESOURCE_PREFIX"] == PREFIX
        assert env["QUEUE_VISIBILITY_TIMEOUT"] == "45"
        assert env["MAX_RECEIVE_COUNT"] == "7"
        logging = container["LogConfiguration"]
        assert logging["LogDriver"] == "awslogs"
        assert logging["Options"]["awslogs-group"] == "<LogGroup>"
        if "PortMappings" in container:
            assert container["PortMappings"][0]["ContainerPort"] == int(env["WEB_PORT"])
            command = " ".join(container["HealthCheck"]["Command"])
            assert f"http://127.0.0.1:{env['WEB_PORT']}/healthz" in command


def test_stop_timeout_covers_supervisords_shutdown() -> None:
    parser = configparser.RawConfigParser(strict=False)
    parser.read(ROOT / "supervisord.conf")
    total = sum(
        int(parser.get(section, "stopwaitsecs", fallback="10"))
        for section in parser.sections()
        if section.startswith("program:")
    )
    (task,) = of_type(resolved_resources("ecs"), "AWS::ECS::TaskDefinition").values()
    # Fargate allows at most 120 s; every program must get its full stop time first.
    assert total <= task["ContainerDefinitions"][0]["StopTimeout"] <= 120


def test_all_in_one_runs_one_task_at_a_time() -> None:
    (service,) = of_type(resolved_resources("ecs"), "AWS::ECS::Service").values()
    # Each task keeps its orders in its own SQLite file: two tasks would split them.
    assert service["DesiredCount"] == 1
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_per_program_commands_are_supervisords() -> None:
    conf = (ROOT / "supervisord.conf").read_text()
    for task in of_type(resolved_resources("ecs-per-program"), "AWS::ECS::TaskDefinition").values():
        command = task["ContainerDefinitions"][0]["Command"]
        # supervisord names the venv's binaries; the image's PATH holds that venv.
        assert " ".join(command[1:]) in conf.replace('"', ""), command


def test_templates_hold_no_secret_or_account(tmp_path: Path) -> None:
    for stack in cloudformation.STACKS:
        (tmp_path / f"{stack}.json").write_text(cloudformation.render(settings(), stack))
    assert scan_secrets.scan([tmp_path]) == []


def test_cli_writes_each_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "messaging.json"
    assert cli.main(["template", "messaging", "-o", str(out)], settings=settings()) == 0
    assert json.loads(out.read_text()) == template("messaging")
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert cli.main(["template", "ecs"], settings=settings()) == 0
    assert json.loads(capsys.readouterr().out) == template("ecs")
