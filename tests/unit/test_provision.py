"""Provisioning from the settings: what the CLI, the benchmark and the test fixtures apply."""

from __future__ import annotations

import boto3
from moto import mock_aws

from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings


def test_provision_applies_what_its_dry_run_planned(aws_env: None, settings: Settings) -> None:
    with mock_aws():
        planned = provision(settings, dry_run=True)
        sqs = boto3.client("sqs", region_name="us-east-1")
        assert sqs.list_queues().get("QueueUrls", []) == []
        lines: list[str] = []
        changes = provision(settings, progress=lines.append)
        assert [c.describe() for c in changes] == [c.describe() for c in planned]
        assert len(lines) == len(changes)
        names = {url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]}
        assert {q.name for q in settings.topology.queues} <= names
        # moto rewords RedriveAllowPolicy, so a second pass may update; it creates nothing.
        assert [c for c in provision(settings) if c.action == "create"] == []
