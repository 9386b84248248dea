"""How many messages each queue and dead-letter queue holds (`pubsub status`, the web)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pubsub_supervisor.topology import Topology

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class QueueDepth:
    """One queue and its DLQ, as SQS counts them (approximate, like every SQS count)."""

    name: str
    consumer: str
    visible: int
    in_flight: int
    delayed: int
    dlq_name: str
    dlq_visible: int


class QueueReader:
    """Reads the topology's queues through one SQS client; caches queue URLs."""

    def __init__(self, sqs: SQSClient, topology: Topology) -> None:
        self.sqs = sqs
        self.topology = topology
        self._urls: dict[str, str] = {}

    def url(self, name: str) -> str:
        """URL of a queue by name."""
        if name not in self._urls:
            self._urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[name]

    def _counts(self, name: str) -> dict[str, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url(name),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return {
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        }

    def depths(self) -> list[QueueDepth]:
        """Every queue with its DLQ's depth, in topology order.

        :raise botocore.exceptions.ClientError: a queue is missing (not provisioned).
        """
        rows = []
        for spec in self.topology.queues:
            main = self._counts(spec.name)
            dlq = self._counts(spec.dlq_name)
            rows.append(
                QueueDepth(
                    name=spec.name,
                    consumer=spec.consumer,
                    visible=main["visible"],
                    in_flight=main["in_flight"],
                    delayed=main["delayed"],
                    dlq_name=spec.dlq_name,
                    dlq_visible=dlq["visible"] + dlq["in_flight"],
                )
            )
        return rows
