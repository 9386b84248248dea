"""`pubsub provision` (dry run, apply, check) and `pubsub lint-topology`, on moto's mock AWS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from pubsub_ops import cli
from pubsub_supervisor.settings import Settings


@pytest.fixture
def empty_aws(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENV_FILE", "")
    monkeypatch.setenv("RESOURCE_PREFIX", "cli")
    with mock_aws():
        yield


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_dry_run_on_an_empty_account_lists_every_resource_with_its_policies(
    empty_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "provision", "--dry-run")
    assert code == cli.EXIT_OK
    topology = Settings(_env_file=None, resource_prefix="cli").topology  # type: ignore[call-arg]
    for topic in topology.topics:
        assert f"would create topic {topic}\n" in out
    for queue in topology.queues:
        block = out.split(f"would create queue {queue.name}\n", 1)[1].split("would ", 1)[0]
        assert '"aws:SourceArn"' in block
        assert queue.topic in block  # the policy names this queue's own topic
        assert "SqsManagedSseEnabled: true" in block
        assert f"{queue.dlq_name}" in block  # RedrivePolicy
        dlq = out.split(f"would create queue {queue.dlq_name}\n", 1)[1].split("would ", 1)[0]
        assert "MessageRetentionPeriod: 1209600" in dlq
        assert "RedriveAllowPolicy" in dlq
        assert f"would create subscription {queue.topic} -> {queue.name}\n" in out
    assert "would create email identity orders@example.com" in out
    assert "would create configuration set cli-email\n" in out
    assert "would create event destination cli-email\n" in out
    assert "would would" not in out
    topics, queues = len(topology.topics), len(topology.queues)
    assert f"{topics + 2 * queues + queues + 1 + 2} resource(s) would change" in out
    # Nothing was created.
    assert run(capsys, "provision", "--check")[0] == cli.EXIT_FAILED


def test_check_fails_before_and_passes_after_provisioning(
    empty_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "provision", "--check")
    assert code == cli.EXIT_FAILED
    assert "[exists]" in out
    assert run(capsys, "provision")[0] == cli.EXIT_OK
    code, out = run(capsys, "provision", "--check")
    assert code == cli.EXIT_OK, out
    assert "No problems" in out


def test_provision_refuses_a_definition_aws_would_reject(
    empty_aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retention over the 14 days SQS allows: the lint stops it before any change.
    monkeypatch.setattr("pubsub_supervisor.topology.QUEUE_RETENTION_SECONDS", 2_000_000)
    code, out = run(capsys, "provision")
    assert code == cli.EXIT_FAILED
    assert "[limits]" in out
    assert "Applying" not in out


def test_lint_topology_runs_offline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV_FILE", "")
    code, out = run(capsys, "lint-topology")
    assert code == cli.EXIT_OK
    assert "No problems in the topology definition." in out
