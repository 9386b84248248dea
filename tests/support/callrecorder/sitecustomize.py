"""Records every AWS API call a stack program makes: for the IAM policy check, and for the
benchmark's calls per order.

The integration fixtures and the benchmark put this folder on the programs' PYTHONPATH
and name a file in PUBSUB_TEST_AWS_CALL_LOG; each call appends one JSON line as it starts
(program, service, operation, the parameters that name a resource, and when). Nothing
else changes: the call goes ahead unaltered.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_PATH = os.environ.get("PUBSUB_TEST_AWS_CALL_LOG")
_RESOURCE_PARAMS = ("QueueUrl", "QueueName", "TopicArn", "SubscriptionArn", "Source")


def _install(path: str) -> None:
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        record = {
            "program": os.environ.get("PROGRAM_NAME"),
            "service": self.meta.service_model.service_name,
            "operation": operation_name,
            **{k: api_params[k] for k in _RESOURCE_PARAMS if k in api_params},
            "t": round(time.time(), 4),
        }
        # Written as the call starts: a long poll in flight is counted in the window it
        # began in, even before it returns.
        # One O_APPEND write per line: lines from concurrent processes do not interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        finally:
            os.close(fd)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording  # type: ignore[attr-defined]


if _PATH:
    _install(_PATH)
