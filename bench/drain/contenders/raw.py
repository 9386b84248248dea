"""Pre-fill for the contenders that consume the raw SNS-delivered events."""

from __future__ import annotations

from typing import Any

from bench.core import payload
from bench.drain.contenders.common import WorkerEnv, sqs_client


def prefill(env: WorkerEnv, events: list[dict[str, Any]]) -> None:
    """Send the events as SNS raw delivery leaves them: JSON body, publisher's attributes."""
    sqs = sqs_client(env.endpoint_url)
    for start in range(0, len(events), 10):
        batch = events[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=env.queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": payload.body(event),
                    "MessageAttributes": {
                        "event_type": {"DataType": "String", "StringValue": event["event_type"]},
                        "event_id": {"DataType": "String", "StringValue": event["event_id"]},
                    },
                }
                for i, event in enumerate(batch)
            ],
        )
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")
