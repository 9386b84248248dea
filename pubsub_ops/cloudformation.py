"""CloudFormation templates generated from the one topology definition and the IAM policies.

`messaging_template` is the stack of topics, queues, DLQs, queue policies, subscriptions and
the SES configuration set; `ecs_template` runs the image on ECS Fargate, all in one task
(`all-in-one`) or one service per program with backlog-based autoscaling (`per-program`).

Names are not copied: the topology is built with the prefix `${ResourcePrefix}` and the
sender `${EmailSender}`, ARNs are built by `TemplateArns` with CloudFormation's
pseudo parameters, and every string that holds `${...}` becomes an `Fn::Sub`. So the
queue attributes (`desired_queue_attributes`), the queue policies and the task roles'
policies (`pubsub_ops/iam.py`) are exactly those `pubsub provision` and
`pubsub iam-policy` produce.
"""

from __future__ import annotations

import json
from typing import Any

from pubsub_ops import iam
from pubsub_supervisor import registry
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import (
    Arns,
    QueueSpec,
    Topology,
    build_topology,
    desired_queue_attributes,
    queue_policy,
    sends_destination_name,
)

PREFIX = "ResourcePrefix"
SENDER = "EmailSender"
#: The two stacks' templates, by the name `pubsub template` takes.
STACKS = ("messaging", "ecs", "ecs-per-program")
LAYOUTS = ("all-in-one", "per-program")
#: The web's port inside the task (the load balancer's target port).
WEB_PORT = 3000
#: Commands of the web's two programs in their own container (supervisord.conf's, with the
#: image's PATH holding the virtualenv); the services' come from the registry.
WEB_COMMANDS = {
    "web": ("gunicorn", "--config", "python:web.gunicorn_conf", "web:create_app()"),
    "web_worker": ("python", "-m", "web.worker"),
}
#: Fargate's stop timeout, the longest it allows: supervisord stops every program in order.
STOP_TIMEOUT = 90
#: Queue attributes that become CloudFormation properties of `AWS::SQS::Queue`, by type.
_INTEGER_ATTRIBUTES = frozenset(
    {"VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"}
)
_BOOLEAN_ATTRIBUTES = frozenset({"SqsManagedSseEnabled"})
_JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy"})


class TemplateArns(Arns):
    """ARNs written with CloudFormation's pseudo parameters (for `Fn::Sub`)."""

    def __init__(self) -> None:
        super().__init__(account="${AWS::AccountId}", region="${AWS::Region}")

    @property
    def partition(self) -> str:
        """The stack's own partition."""
        return "${AWS::Partition}"


def template_topology(settings: Settings) -> Topology:
    """The settings' topology, with the prefix and sender left to the stack's parameters."""
    return build_topology(
        prefix="${" + PREFIX + "}",
        services=registry.SERVICES,
        max_receive_count=settings.max_receive_count,
        visibility_timeout=settings.queue_visibility_timeout,
        # The IAM statement names the sender and its domain: both parts come from the
        # parameter (see `sub`), so the policy is iam.py's own.
        email_identities=("${SenderUser}@${SenderDomain}",),
    )


#: `Fn::Sub` variables for the sender's parts (`Fn::Sub` alone cannot split a string).
_SENDER_PARTS = {
    "SenderUser": {"Fn::Select": [0, {"Fn::Split": ["@", {"Ref": SENDER}]}]},
    "SenderDomain": {"Fn::Select": [1, {"Fn::Split": ["@", {"Ref": SENDER}]}]},
}


def sub(value: Any) -> Any:
    """`value` with every string holding a `${...}` reference turned into an `Fn::Sub`."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        local = {k: v for k, v in _SENDER_PARTS.items() if "${" + k + "}" in value}
        return {"Fn::Sub": [value, local] if local else value}
    if isinstance(value, dict):
        return {key: sub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sub(item) for item in value]
    return value


def logical_id(name: str, kind: str) -> str:
    """A resource's logical id from a name after the prefix: `email-sends` -> EmailSendsQueue."""
    bare = name.removeprefix("${" + PREFIX + "}-")
    words = bare.replace("_", "-").split("-")
    return "".join(word[:1].upper() + word[1:] for word in words) + kind


def _shown(name: str) -> str:
    """A name for a description (where CloudFormation substitutes nothing)."""
    return name.replace("${" + PREFIX + "}", "PREFIX")


def _parameters(settings: Settings) -> dict[str, Any]:
    return {
        PREFIX: {
            "Type": "String",
            "Default": settings.resource_prefix,
            "AllowedPattern": "^[A-Za-z0-9_-]{1,40}$",
            "Description": "Every resource name starts with it (RESOURCE_PREFIX).",
        },
        SENDER: {
            "Type": "String",
            "Default": settings.email_sender,
            "AllowedPattern": "^[^@]+@[^@]+$",
            "Description": "The address confirmations are sent from (EMAIL_SENDER).",
        },
    }


def _queue_properties(name: str, attributes: dict[str, str]) -> dict[str, Any]:
    """The `AWS::SQS::Queue` properties of one queue's attributes (`Policy` excluded)."""
    properties: dict[str, Any] = {"QueueName": name}
    for key, value in attributes.items():
        if key in _INTEGER_ATTRIBUTES:
            properties[key] = int(value)
        elif key in _BOOLEAN_ATTRIBUTES:
            properties[key] = value == "true"
        elif key in _JSON_ATTRIBUTES:
            properties[key] = json.loads(value)
        elif key != "Policy":
            # A new attribute in the topology must be mapped here, not silently dropped.
            raise ValueError(f"queue attribute {key!r} has no CloudFormation property here")
    substituted: dict[str, Any] = sub(properties)
    return substituted


def _queue_resources(topology: Topology, spec: QueueSpec, arns: Arns) -> dict[str, Any]:
    attributes = desired_queue_attributes(spec, arns)
    queue_id = logical_id(spec.consumer, "Queue")
    dlq_id = logical_id(spec.consumer, "DeadLetterQueue")
    topic_id = logical_id(spec.topic, "Topic")
    return {
        dlq_id: {
            "Type": "AWS::SQS::Queue",
            "Properties": _queue_properties(spec.dlq_name, attributes[spec.dlq_name]),
        },
        queue_id: {
            "Type": "AWS::SQS::Queue",
            # The redrive policy names the DLQ by its ARN, which must exist first.
            "DependsOn": dlq_id,
            "Properties": _queue_properties(spec.name, attributes[spec.name]),
        },
        logical_id(spec.consumer, "QueuePolicy"): {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": queue_id}],
                "PolicyDocument": sub(queue_policy(arns.queue(spec.name), arns.topic(spec.topic))),
            },
        },
        logical_id(spec.consumer, "Subscription"): {
            "Type": "AWS::SNS::Subscription",
            # Delivered only once the queue policy lets the topic send (on AWS).
            "DependsOn": logical_id(spec.consumer, "QueuePolicy"),
            "Properties": {
                "TopicArn": {"Ref": topic_id},
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": [queue_id, "Arn"]},
                "RawMessageDelivery": True,
            },
        },
    }


def messaging_template(settings: Settings) -> dict[str, Any]:
    """The messaging stack: every resource `pubsub provision` creates."""
    # The sender's identity only with VerifySender=true: an identity exists once per account.
    topology = template_topology(settings)
    arns = TemplateArns()
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for topic in topology.topics:
        topic_id = logical_id(topic, "Topic")
        resources[topic_id] = {"Type": "AWS::SNS::Topic", "Properties": sub({"TopicName": topic})}
        outputs[topic_id + "Arn"] = {
            "Description": f"ARN of {_shown(topic)}",
            "Value": {"Ref": topic_id},
        }
    for spec in topology.queues:
        resources.update(_queue_resources(topology, spec, arns))
        for kind, name in (("Queue", spec.name), ("DeadLetterQueue", spec.dlq_name)):
            resource_id = logical_id(spec.consumer, kind)
            outputs[resource_id + "Url"] = {
                "Description": f"URL of {_shown(name)}",
                "Value": {"Ref": resource_id},
            }
    resources["SenderIdentity"] = {
        "Type": "AWS::SES::EmailIdentity",
        "Condition": "VerifySenderIdentity",
        "Properties": {"EmailIdentity": {"Ref": SENDER}},
    }
    if topology.configuration_set and topology.email_sends_topic:
        resources["ConfigurationSet"] = {
            "Type": "AWS::SES::ConfigurationSet",
            "Properties": sub({"Name": topology.configuration_set}),
        }
        resources["SendEventsDestination"] = {
            "Type": "AWS::SES::ConfigurationSetEventDestination",
            "Properties": {
                "ConfigurationSetName": {"Ref": "ConfigurationSet"},
                "EventDestination": {
                    "Name": sub(sends_destination_name(topology.configuration_set)),
                    "Enabled": True,
                    "MatchingEventTypes": ["send"],
                    "SnsDestination": {
                        "TopicARN": {"Ref": logical_id(topology.email_sends_topic, "Topic")}
                    },
                },
            },
        }
        outputs["ConfigurationSetName"] = {
            "Description": "The SES configuration set every confirmation is sent with",
            "Value": {"Ref": "ConfigurationSet"},
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "pubsub-supervisor messaging: topics, queues, DLQs, subscriptions, "
        "SES configuration set (generated by `pubsub template messaging`; do not edit)",
        "Parameters": {
            **_parameters(settings),
            "VerifySender": {
                "Type": "String",
                "AllowedValues": ["true", "false"],
                "Default": "true",
                "Description": "Create the SES identity of EmailSender (false: it exists).",
            },
        },
        "Conditions": {"VerifySenderIdentity": {"Fn::Equals": [{"Ref": "VerifySender"}, "true"]}},
        "Resources": resources,
        "Outputs": outputs,
    }


# -- ECS Fargate -----------------------------------------------------------------------


def _ecs_parameters(settings: Settings, layout: str) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        **_parameters(settings),
        "Image": {"Type": "String", "Description": "The image (Dockerfile.supervisor), in ECR"},
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Private subnets of the tasks (they reach SNS, SQS, SES, ECR)",
        },
        "SecurityGroups": {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups of the tasks",
        },
        "WebSecretKeyParameter": {
            "Type": "String",
            "AllowedPattern": "^/.+",
            "Description": "SSM SecureString parameter name holding WEB_SECRET_KEY",
        },
        "OperatorPasswordParameter": {
            "Type": "String",
            "AllowedPattern": "^/.+",
            "Description": "SSM SecureString parameter name holding OPERATOR_PASSWORD",
        },
    }
    if layout == "per-program":
        parameters |= {
            "DatabaseUrlParameter": {
                "Type": "String",
                "AllowedPattern": "^/.+",
                "Description": "SSM SecureString parameter name holding DATABASE_URL "
                "(PostgreSQL: every program's store, shared by all their tasks)",
            },
            "MaxTasks": {
                "Type": "Number",
                "Default": 4,
                "MinValue": 1,
                "Description": "Most tasks of each service while its queue is backed up",
            },
            "BacklogPerTask": {
                "Type": "Number",
                "Default": 100,
                "MinValue": 1,
                "Description": "Visible messages per task the autoscaling keeps to",
            },
        }
    return parameters


def _secrets(layout: str) -> list[tuple[str, str]]:
    names = [("WEB_SECRET_KEY", "WebSecretKeyParameter")]
    names.append(("OPERATOR_PASSWORD", "OperatorPasswordParameter"))
    if layout == "per-program":
        names.append(("DATABASE_URL", "DatabaseUrlParameter"))
    return names


def _parameter_arn(parameter: str) -> dict[str, str]:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
        + "${"
        + parameter
        + "}"
    }


def _environment(settings: Settings, program: str | None) -> list[dict[str, Any]]:
    """The container's settings: the ones the template's topology was generated with."""
    values: dict[str, Any] = {
        "AWS_REGION": {"Ref": "AWS::Region"},
        "RESOURCE_PREFIX": {"Ref": PREFIX},
        "EMAIL_SENDER": {"Ref": SENDER},
        "MAX_RECEIVE_COUNT": str(settings.max_receive_count),
        "QUEUE_VISIBILITY_TIMEOUT": str(settings.queue_visibility_timeout),
        "WEB_HOST": "0.0.0.0",  # inside the task, behind the load balancer
        "WEB_PORT": str(WEB_PORT),
        "WEB_WORKERS": "2",
        "LOG_LEVEL": "INFO",
        "TRUSTED_PROXIES": "1",
        "ENV_FILE": "",
    }
    if program is not None:
        values["PROGRAM_NAME"] = program
    return [{"Name": name, "Value": value} for name, value in values.items()]


def _health_check() -> dict[str, Any]:
    probe = f"urllib.request.urlopen('http://127.0.0.1:{WEB_PORT}/healthz', timeout=4)"
    return {
        "Command": ["CMD-SHELL", f'python3 -c "import urllib.request; {probe}" || exit 1'],
        "Interval": 15,
        "Timeout": 5,
        "Retries": 3,
        "StartPeriod": 60,
    }


def _container(settings: Settings, layout: str, program: str | None) -> dict[str, Any]:
    name = program or "app"
    container: dict[str, Any] = {
        "Name": name.replace("_", "-"),
        "Image": {"Ref": "Image"},
        "Essential": True,
        "Environment": _environment(settings, program),
        "Secrets": [
            {"Name": variable, "ValueFrom": _parameter_arn(parameter)}
            for variable, parameter in _secrets(layout)
        ],
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": "LogGroup"},
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": name.replace("_", "-"),
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
        "StopTimeout": STOP_TIMEOUT,
        "Ulimits": [{"Name": "nofile", "SoftLimit": 4096, "HardLimit": 8192}],
    }
    if program is not None:
        container["Command"] = list(_program_command(program))
    if program in (None, "web"):
        container["PortMappings"] = [{"Name": "web", "ContainerPort": WEB_PORT, "Protocol": "tcp"}]
        container["HealthCheck"] = _health_check()
    return container


def _program_command(program: str) -> tuple[str, ...]:
    if program in WEB_COMMANDS:
        return WEB_COMMANDS[program]
    spec = next(s for s in registry.SERVICES if s.program == program)
    return ("python", *spec.command)


def _role(policy_name: str, document: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [{"PolicyName": policy_name, "PolicyDocument": sub(document)}],
        },
    }


def _execution_role(layout: str) -> dict[str, Any]:
    role = _role(
        "read-secrets",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadTheTaskSecrets",
                    "Effect": "Allow",
                    "Action": "ssm:GetParameters",
                    "Resource": [_parameter_arn(p)["Fn::Sub"] for _, p in _secrets(layout)],
                }
            ],
        },
    )
    role["Properties"]["ManagedPolicyArns"] = [
        {
            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
            "AmazonECSTaskExecutionRolePolicy"
        }
    ]
    return role


def _task_definition(
    settings: Settings, layout: str, program: str | None, role_id: str
) -> dict[str, Any]:
    family = "${" + PREFIX + "}-" + (program or "app").replace("_", "-")
    # One container with every program needs more than one program alone.
    cpu, memory = ("1024", "2048") if program is None else ("512", "1024")
    return {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": {"Fn::Sub": family},
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": cpu,
            "Memory": memory,
            "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
            "ExecutionRoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
            "TaskRoleArn": {"Fn::GetAtt": [role_id, "Arn"]},
            "ContainerDefinitions": [_container(settings, layout, program)],
        },
    }


def _service(program: str | None, task_id: str, single: bool) -> dict[str, Any]:
    name = "${" + PREFIX + "}-" + (program or "app").replace("_", "-")
    deployment: dict[str, Any] = {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
    if single:
        # Exactly one task at a time: the all-in-one task keeps its orders in its own
        # SQLite file, and the web's worker is the one outbox relay.
        deployment |= {"MaximumPercent": 100, "MinimumHealthyPercent": 0}
    return {
        "Type": "AWS::ECS::Service",
        "Properties": {
            "ServiceName": {"Fn::Sub": name},
            "Cluster": {"Ref": "Cluster"},
            "TaskDefinition": {"Ref": task_id},
            "DesiredCount": 1,
            "LaunchType": "FARGATE",
            "PlatformVersion": "LATEST",
            "DeploymentConfiguration": deployment,
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": {"Ref": "Subnets"},
                    "SecurityGroups": {"Ref": "SecurityGroups"},
                    "AssignPublicIp": "DISABLED",
                }
            },
            "PropagateTags": "TASK_DEFINITION",
            "EnableECSManagedTags": True,
            "EnableExecuteCommand": False,
        },
    }


def _autoscaling(program: str, service_id: str, queue: str) -> dict[str, Any]:
    """Target tracking on the queue's visible messages per running task (metric math)."""
    target_id = logical_id(program, "ScalableTarget")
    service_name = {"Fn::GetAtt": [service_id, "Name"]}
    return {
        target_id: {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": {
                    "Fn::Sub": [
                        "service/${Cluster}/${Service}",
                        {"Cluster": {"Ref": "Cluster"}, "Service": service_name},
                    ]
                },
                "MinCapacity": 1,
                "MaxCapacity": {"Ref": "MaxTasks"},
            },
        },
        logical_id(program, "BacklogScaling"): {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": {"Fn::Sub": "${" + PREFIX + "}-" + program + "-backlog"},
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": {"Ref": target_id},
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": {"Ref": "BacklogPerTask"},
                    "ScaleInCooldown": 120,
                    "ScaleOutCooldown": 30,
                    "CustomizedMetricSpecification": {
                        "Metrics": [
                            {
                                "Id": "visible",
                                "ReturnData": False,
                                "MetricStat": {
                                    "Metric": {
                                        "Namespace": "AWS/SQS",
                                        "MetricName": "ApproximateNumberOfMessagesVisible",
                                        "Dimensions": [
                                            {"Name": "QueueName", "Value": {"Fn::Sub": queue}}
                                        ],
                                    },
                                    "Stat": "Sum",
                                },
                            },
                            {
                                "Id": "tasks",
                                "ReturnData": False,
                                "MetricStat": {
                                    "Metric": {
                                        "Namespace": "ECS/ContainerInsights",
                                        "MetricName": "RunningTaskCount",
                                        "Dimensions": [
                                            {"Name": "ClusterName", "Value": {"Ref": "Cluster"}},
                                            {"Name": "ServiceName", "Value": service_name},
                                        ],
                                    },
                                    "Stat": "Average",
                                },
                            },
                            {
                                "Id": "backlog_per_task",
                                "Label": "Visible messages per running task",
                                "Expression": "visible / tasks",
                                "ReturnData": True,
                            },
                        ]
                    },
                },
            },
        },
    }


def ecs_template(settings: Settings, layout: str = "all-in-one") -> dict[str, Any]:
    """The ECS Fargate stack that runs the image against the messaging stack's resources."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    topology = template_topology(settings)
    arns = TemplateArns()
    resources: dict[str, Any] = {
        "Cluster": {
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": {"Ref": PREFIX},
                # RunningTaskCount, which the backlog-per-task scaling divides by.
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            },
        },
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": "/ecs/${" + PREFIX + "}"},
                "RetentionInDays": 30,
            },
        },
        "ExecutionRole": _execution_role(layout),
    }
    outputs: dict[str, Any] = {"ClusterName": {"Value": {"Ref": "Cluster"}}}
    if layout == "all-in-one":
        resources["TaskRole"] = _role("app", iam.runtime_policy(topology, arns))
        resources["TaskDefinition"] = _task_definition(settings, layout, None, "TaskRole")
        resources["Service"] = _service(None, "TaskDefinition", single=True)
        outputs["ServiceName"] = {"Value": {"Fn::GetAtt": ["Service", "Name"]}}
    else:
        services = {spec.program: spec for spec in registry.SERVICES}
        for program in iam.program_names():
            role_id = logical_id(program, "TaskRole")
            task_id = logical_id(program, "TaskDefinition")
            service_id = logical_id(program, "Service")
            policy = iam.program_policy(topology, arns, program)
            resources[role_id] = _role(program.replace("_", "-"), policy)
            resources[task_id] = _task_definition(settings, layout, program, role_id)
            resources[service_id] = _service(program, task_id, single=program == "web_worker")
            outputs[service_id + "Name"] = {"Value": {"Fn::GetAtt": [service_id, "Name"]}}
            if program in services:
                queue = topology.queue_for(services[program].queue).name
                resources.update(_autoscaling(program, service_id, queue))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"pubsub-supervisor on ECS Fargate, {layout} (generated by "
        "`pubsub template`; do not edit). Deploy the messaging stack first.",
        "Parameters": _ecs_parameters(settings, layout),
        "Resources": resources,
        "Outputs": outputs,
    }


def render(settings: Settings, stack: str) -> str:
    """One template as JSON text: `messaging`, `ecs` or `ecs-per-program`."""
    if stack == "messaging":
        template = messaging_template(settings)
    elif stack == "ecs":
        template = ecs_template(settings, "all-in-one")
    elif stack == "ecs-per-program":
        template = ecs_template(settings, "per-program")
    else:
        raise ValueError(f"no template {stack!r}; use one of {', '.join(STACKS)}")
    return json.dumps(template, indent=2) + "\n"
