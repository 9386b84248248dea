"""The publish batcher on moto's SNS: concurrent publishes share PublishBatch calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from pubsub_supervisor.errors import PublishFailed
from pubsub_supervisor.publish_batcher import PublishBatcher

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def sns() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sns", region_name="us-east-1")


def test_concurrent_publishes_share_batches(sns: Any) -> None:
    topic = sns.create_topic(Name="results")["TopicArn"]
    batcher = PublishBatcher(sns, topic, linger_seconds=0.5, more_coming=lambda n: n < 10)
    with mock.patch.object(sns, "publish_batch", wraps=sns.publish_batch) as calls:
        threads = [threading.Thread(target=batcher.publish, args=(f"m{i}", {})) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    sizes = [len(c.kwargs["PublishBatchRequestEntries"]) for c in calls.call_args_list]
    assert sum(sizes) == 10
    assert len(sizes) < 10


def test_a_lone_message_goes_out_without_lingering(sns: Any) -> None:
    topic = sns.create_topic(Name="results")["TopicArn"]
    batcher = PublishBatcher(sns, topic, linger_seconds=60)
    batcher.publish("alone", {})  # would hang for a minute if it lingered


def test_each_caller_gets_its_own_refusal(sns: Any) -> None:
    batcher = PublishBatcher(sns, "arn:aws:sns:us-east-1:123456789012:missing")
    answer = {"Successful": [], "Failed": [{"Id": "0", "Code": "NotFound", "SenderFault": True}]}
    with (
        mock.patch.object(sns, "publish_batch", return_value=answer),
        pytest.raises(PublishFailed, match="NotFound"),
    ):
        batcher.publish("m", {})
