"""Which AWS failures are transient, and the in-place retry of idempotent calls."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from pubsub_supervisor.clients import is_transient, retry_transient


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Publish")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (client_error("InternalError", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (client_error("Throttling", 400), True),
        (client_error("NotFound", 404), True),  # the topic is being recreated
        (client_error("AWS.SimpleQueueService.NonExistentQueue", 400), True),
        (client_error("InvalidParameter", 400), False),
        (client_error("MessageRejected", 400), False),
        (ResponseParserError("invalid XML received: b'service unavailable'"), True),
        (ValueError("bug"), False),
    ],
)
def test_transient_failures(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retries_transient_failures_until_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pubsub_supervisor.clients._pause", lambda _s, _stop: None)
    failures = [EndpointConnectionError(endpoint_url="x"), client_error("Throttling", 400)]

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert retry_transient(call, "publish") == "ok"
    assert failures == []


def test_other_errors_propagate_at_once() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise client_error("InvalidParameter", 400)

    with pytest.raises(ClientError):
        retry_transient(call, "publish")
    assert calls == [1]


def test_gives_up_when_asked_to_stop() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="x")

    with pytest.raises(EndpointConnectionError):
        retry_transient(call, "publish", should_stop=lambda: len(calls) >= 2)
    assert len(calls) == 2


def test_gives_up_after_max_seconds() -> None:
    def call() -> None:
        raise EndpointConnectionError(endpoint_url="x")

    with pytest.raises(EndpointConnectionError):
        retry_transient(call, "publish", max_seconds=0.1)
