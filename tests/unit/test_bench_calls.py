"""The benchmark's AWS call counting: the recorder every program loads, and the tallies."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.stub import Stubber

from bench.e2e import calls
from tests.support.fixtures import CALL_RECORDER


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The recorder installed in this process, as a program would load it; removed after."""
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PUBSUB_TEST_AWS_CALL_LOG", str(path))
    monkeypatch.setenv("PROGRAM_NAME", "web_worker")
    original = BaseClient._make_api_call  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location("recorder", CALL_RECORDER / "sitecustomize.py")
    assert spec is not None
    assert spec.loader is not None
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        yield path
    finally:
        BaseClient._make_api_call = original  # type: ignore[attr-defined]


def test_every_call_is_counted_by_operation_in_its_window(recorded: Path) -> None:
    sqs = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    started = time.time()
    with Stubber(sqs) as stub:
        for _ in range(3):
            stub.add_response("receive_message", {"Messages": []}, {"QueueUrl": url})
        stub.add_response("delete_message_batch", {"Successful": [], "Failed": []})
        for _ in range(3):
            sqs.receive_message(QueueUrl=url)
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": "r"}])
    ended = time.time() + 1

    log = calls.read(recorded)
    counts = calls.count(log, started, ended)

    assert counts == {"sqs.DeleteMessageBatch": 1, "sqs.ReceiveMessage": 3}
    assert calls.count(log, ended, ended + 60) == {}
    per = calls.per_order(counts, 2)
    assert per == {"sqs.DeleteMessageBatch": 0.5, "sqs.ReceiveMessage": 1.5}
    assert calls.grouped(per)[-1] == 2.0


def test_calls_of_other_processes_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(
        '{"program": null, "service": "sns", "operation": "PublishBatch", "t": 5}\n'
        '{"program": "web", "service": "sns", "operation": "PublishBatch", "t": 5}\n'
        '{"program": "web", "service": "sns", "opera'  # cut short by a kill
    )
    assert calls.count(calls.read(path), 0, 10) == {"sns.PublishBatch": 1}


def test_the_design_minimum_is_about_three_calls_per_order() -> None:
    minimum = calls.design_minimum()
    assert minimum["ses.SendEmail"] == 1
    assert 2.5 < sum(minimum.values()) < 3.5
