"""The operator side's bounds and the stack's private files, on the real stack.

The session stack (supervisord, gunicorn, every program, a real LocalStack): a DLQ with
many dead letters gives a bounded /dlq page that hands the messages straight back; the
stores and the web's secret key in the running stack's data folder are owner-only; and
the web's own IAM policy holds no SES right and no right to send to a queue.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from pubsub_supervisor import dlq
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.settings import Settings
from tests.support.stack import ROOT, VENV, SupervisedStack, wait_for

pytestmark = pytest.mark.integration

#: Dead letters put in one DLQ: several pages' worth.
DEAD = 150


def dlq_section(page: str, name: str) -> str:
    """The part of the /dlq page about one DLQ."""
    found = re.search(rf'<section[^>]*id="{re.escape(name)}".*?</section>', page, re.DOTALL)
    assert found, f"no section for {name} on the page"
    return found.group(0)


def counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def remove(sqs: Any, url: str, ids: set[str]) -> None:
    """Delete exactly these messages from the queue; leave any other there, visible."""
    left = set(ids)
    for _ in range(DEAD):
        if not left:
            return
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        if not batch:
            continue
        for m in batch:
            if m["MessageId"] in left:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                left.discard(m["MessageId"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )


def test_the_dlq_page_reads_a_bounded_page_and_hands_it_back(
    stack: SupervisedStack, stack_settings: Settings
) -> None:
    sqs = make_clients(stack_settings).sqs
    spec = stack_settings.topology.queue_for("analytics")
    url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    tag = uuid.uuid4().hex[:8]
    ours: set[str] = set()
    for start in range(0, DEAD, 10):
        sent = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(n),
                    "MessageBody": json.dumps({"event_type": "order.created", "tag": tag, "n": n}),
                    "MessageAttributes": {
                        "dead_letter_reason": {
                            "DataType": "String",
                            "StringValue": f"security tier {tag}",
                        }
                    },
                }
                for n in range(start, start + 10)
            ],
        )
        assert not sent.get("Failed"), sent["Failed"]
        ours |= {entry["MessageId"] for entry in sent["Successful"]}
    try:
        wait_for(lambda: counts(sqs, url)[0] >= DEAD, 30, f"{DEAD} messages in {spec.dlq_name}")
        began = time.monotonic()
        first = requests.get(f"{stack.base_url}/dlq", timeout=30)
        took = time.monotonic() - began
        assert first.status_code == 200
        # Five DLQs, read side by side, each a few receives of at most 1 s.
        assert took < 10, f"/dlq took {took:.1f} s"
        section = dlq_section(first.text, spec.dlq_name)
        shown = re.findall(r'data-message-id="([^"]+)"', section)
        assert len(shown) == len(set(shown)) == dlq.PAGE_SIZE
        assert set(shown) <= ours
        more = re.search(r"(\d+) shown, more in the queue \(approximate count (\d+)\)", section)
        assert more, section[:2000]
        assert int(more.group(1)) == dlq.PAGE_SIZE
        assert int(more.group(2)) >= DEAD
        # Handed straight back: nothing of ours is held once the page has answered.
        assert counts(sqs, url)[1] == 0
        second = requests.get(f"{stack.base_url}/dlq", timeout=30)
        assert second.status_code == 200
        again = re.findall(r'data-message-id="([^"]+)"', dlq_section(second.text, spec.dlq_name))
        assert len(set(again)) == dlq.PAGE_SIZE
        assert counts(sqs, url)[1] == 0
    finally:
        remove(sqs, url, ours)


def test_the_running_stacks_stores_and_secret_key_are_owner_only(
    stack: SupervisedStack, stack_settings: Settings
) -> None:
    data = Path(stack_settings.data_dir)
    assert stack.ready()
    key = data / "web-secret-key"
    private = [key]
    if stack_settings.database_url("web").startswith("sqlite"):
        stores = sorted(data.glob("*.sqlite3*"))
        # Every store of the stack, with its WAL files.
        assert {p.name for p in stores} >= {"web.sqlite3", "inventory.sqlite3", "web.sqlite3-wal"}
        private += stores
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private}
    assert modes == {p.name: oct(0o600) for p in private}
    assert all(p.stat().st_uid == os.getuid() for p in private)


def test_the_webs_own_policy_has_no_ses_and_sends_to_no_queue(
    stack: SupervisedStack, stack_env: dict[str, str], stack_settings: Settings
) -> None:
    printed = subprocess.run(
        [str(VENV / "bin" / "pubsub"), "iam-policy", "--program", "web"],
        env={**stack.env, **stack_env, "ENV_FILE": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    policy = json.loads(printed.stdout)
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions, printed.stdout
    assert not [a for a in actions if a.startswith("ses:")]
    assert "sqs:SendMessage" not in actions
    # It publishes each order's event on commit: to the order topic, and nowhere else.
    published_to = {
        resource
        for statement in policy["Statement"]
        if "sns:Publish" in statement["Action"]
        for resource in (
            [statement["Resource"]]
            if isinstance(statement["Resource"], str)
            else statement["Resource"]
        )
    }
    order_topic = stack_settings.topology.order_topic
    assert published_to, policy
    assert all(r.endswith(f":{order_topic}") for r in published_to), policy
    # The account comes from the stack's emulator, as on AWS from the caller's role.
    account = make_clients(stack_settings).sts.get_caller_identity()["Account"]
    assert f":{account}:" in printed.stdout
