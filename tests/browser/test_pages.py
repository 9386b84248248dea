"""The pages in a real browser: place an order, watch it live, watch the pipeline, redrive."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, select

from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.settings import Settings
from tests.browser.conftest import VIEWPORT, Console, screenshot
from tests.support.emulators import Emulator
from tests.support.stack import Api, SupervisedStack, wait_for
from web.schema import outbox

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SERVICES = ("email", "inventory", "analytics")
#: Long enough for an order to cross the pipeline on a busy 2-core machine.
SETTLE_MS = 30_000


def email() -> str:
    return f"shopper-{uuid.uuid4().hex[:10]}@example.com"


def mark_page(page: Page) -> str:
    """Put a token in the page's window; it survives only if the page never reloads."""
    token = uuid.uuid4().hex
    page.evaluate("token => { window.__pageToken = token; }", token)
    return token


def same_page(page: Page, token: str) -> bool:
    return bool(page.evaluate("token => window.__pageToken === token", token))


def order_id_from(url: str) -> str:
    match = re.search(r"/orders/([0-9a-f]{32})$", url)
    assert match, url
    return match.group(1)


def test_order_placed_through_the_form_turns_processed_live(page: Page, api: Api) -> None:
    page.goto("/")
    screenshot(page, "order_form")
    page.fill("#customer_email", email())
    page.fill("#qty-MS-002", "2")
    page.fill("#qty-CB-005", "1")
    # The running total follows the quantities (2 x $29.00 + $12.00).
    expect(page.locator("#order-total")).to_have_text("$70.00")

    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}$"))
    order_id = order_id_from(page.url)
    token = mark_page(page)
    expect(page.locator(".flash-success")).to_contain_text("Order placed")

    for service in SERVICES:
        status = page.locator(f'[data-step="{service}"] [data-status]')
        expect(status).to_have_text("processed", timeout=SETTLE_MS)
    expect(page.locator('[data-step="published"] .badge')).to_have_text("published")
    expect(page.locator("#order-status")).to_have_text("processed")
    expect(page.locator("#timeline")).to_have_attribute("data-settled", "true")
    # The timeline changed in place: the page was never reloaded.
    assert same_page(page, token)
    assert api.order(order_id)["status"] == "processed"
    expect(page.locator("#trace-id")).to_have_text(api.order(order_id)["trace_id"])
    screenshot(page, "order")


def test_form_errors_are_shown_beside_the_fields(page: Page, api: Api, console: Console) -> None:
    console.expect("status of 422")
    listed = len(api.get("/api/orders?limit=100").json()["orders"])
    page.goto("/")
    page.fill("#customer_email", "not-an-address")
    page.fill("#qty-KB-001", "5000")
    response_status = []
    page.on(
        "response",
        lambda r: response_status.append(r.status) if r.request.method == "POST" else None,
    )
    page.click("button[type=submit]")
    page.wait_for_load_state()

    assert response_status == [422]
    expect(page.locator("#form-errors")).to_be_visible()
    expect(page.locator("#customer_email-error")).to_contain_text("email")
    expect(page.locator("#qty-KB-001-error")).to_contain_text("1000")
    # What was typed is still there to correct.
    expect(page.locator("#customer_email")).to_have_value("not-an-address")
    expect(page.locator("#qty-KB-001")).to_have_value("5000")
    screenshot(page, "order_form_errors")

    page.fill("#qty-KB-001", "")
    page.fill("#customer_email", email())
    page.click("button[type=submit]")
    expect(page.locator("#items-error")).to_contain_text("Choose at least one product")
    assert len(api.get("/api/orders?limit=100").json()["orders"]) == listed


def test_form_works_without_javascript(browser: Browser, stack: SupervisedStack, api: Api) -> None:
    context = browser.new_context(
        base_url=stack.base_url, viewport=VIEWPORT, java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.goto("/")
        page.fill("#customer_email", email())
        page.fill("#qty-LT-006", "1")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}$"))
        order_id = order_id_from(page.url)
        # Without scripts the page says it is a snapshot; a reload shows the outcome.
        expect(page.locator("#live-hint")).to_contain_text("Reload")
        api.wait_settled(order_id)
        page.reload()
        for service in SERVICES:
            expect(page.locator(f'[data-step="{service}"] [data-status]')).to_have_text("processed")
    finally:
        context.close()


def test_order_list_links_to_each_order(page: Page, api: Api) -> None:
    placed = api.post_order(email(), [{"sku": "HD-004", "quantity": 1}]).json()["id"]
    page.goto("/orders")
    link = page.locator(f'a[href="/orders/{placed}"]')
    expect(link).to_be_visible()
    screenshot(page, "orders")
    link.click()
    page.wait_for_url(f"**/orders/{placed}")
    expect(page.locator("h1")).to_contain_text(placed[:8])


def test_dashboard_follows_new_orders_without_reload(page: Page, api: Api) -> None:
    page.goto("/pipeline")
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    token = mark_page(page)
    counted = int(page.locator("#stat-orders").inner_text())
    units_before = int(page.locator("#stat-units").inner_text())
    email_processed = int(
        page.locator('tr[data-queue="pubsub-email"] [data-field="processed"]').inner_text()
    )
    orders: list[list[dict[str, Any]]] = [
        [{"sku": "KB-001", "quantity": 1}, {"sku": "MS-002", "quantity": 2}],
        [{"sku": "MN-003", "quantity": 1}],
        [{"sku": "CB-005", "quantity": 4}],
        [{"sku": "HD-004", "quantity": 1}, {"sku": "CB-005", "quantity": 2}],
        [{"sku": "LT-006", "quantity": 2}],
        [{"sku": "MS-002", "quantity": 1}],
    ]
    ids = [api.post_order(email(), items).json()["id"] for items in orders]
    for order_id in ids:
        api.wait_settled(order_id)

    page.wait_for_function(
        "n => Number(document.getElementById('stat-orders').textContent) >= n",
        arg=counted + len(orders),
        timeout=SETTLE_MS,
    )
    units = sum(line["quantity"] for items in orders for line in items)
    assert int(page.locator("#stat-units").inner_text()) >= units_before + units
    processed_cell = page.locator('tr[data-queue="pubsub-email"] [data-field="processed"]')
    page.wait_for_function(
        "([el, n]) => Number(el.textContent) >= n",
        arg=[processed_cell.element_handle(), email_processed + len(orders)],
    )
    # Every queue shows numbers read from SQS, and the chart drew a bar per product sold.
    for cell in page.locator('[data-field="visible"]').all():
        assert cell.inner_text().isdigit()
    bars = page.locator("#chart-units rect")
    assert bars.count() >= 6
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(bars.count())]
    assert max(heights) > 0
    # The page was open before the orders: its last-minute count saw every one of them.
    last_minute = page.locator('tr[data-queue="pubsub-email"] [data-field="processed_last_minute"]')
    page.wait_for_function(
        "([el, n]) => Number(el.textContent) >= n",
        arg=[last_minute.element_handle(), len(orders)],
    )
    assert same_page(page, token)
    screenshot(page, "dashboard")


def outbox_event(settings: Settings, order_id: str) -> tuple[str, dict[str, Any]]:
    """The body and SNS attributes the web published for an order, from its real store."""
    engine = create_engine(settings.database_url("web"))
    try:
        with engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.aggregate_id == order_id)).one()
    finally:
        engine.dispose()
    return row.body, json.loads(row.attributes)


def test_dead_letter_page_shows_a_message_and_redrives_it(
    page: Page, api: Api, stack_settings: Settings, emulator: Emulator
) -> None:
    # Given an order that went through, whose event also sits in email's DLQ (as if an
    # earlier delivery had failed every retry).
    buyer = email()
    order_id = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}]).json()["id"]
    api.wait_settled(order_id)
    body, attributes = outbox_event(stack_settings, order_id)
    sqs = make_clients(stack_settings).sqs
    spec = stack_settings.topology.queue_for("email")
    dlq_url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    reason = "failed 5 times: TimeoutError: SES did not answer"
    sent = sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes={
            **attributes,
            "dead_letter_reason": {"DataType": "String", "StringValue": reason},
        },
    )

    # When the operator opens the DLQ page, the message is there with its reason.
    page.goto("/dlq")
    row = page.locator(f'tr[data-message-id="{sent["MessageId"]}"]')
    expect(row).to_contain_text(reason)
    expect(row.locator(f'a[href="/orders/{order_id}"]')).to_be_visible()
    screenshot(page, "dlq")

    # And redrives it.
    row.get_by_role("button", name="Redrive").click()
    expect(page.locator(".flash-success")).to_contain_text(
        f"Redrove 1 message from {spec.dlq_name}"
    )
    expect(page.locator(f'tr[data-message-id="{sent["MessageId"]}"]')).to_have_count(0)

    # Then email handles the event again, idempotently: the DLQ and its queue drain,
    # and the customer still got exactly one confirmation.
    def drained() -> bool:
        for url in (dlq_url, sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]):
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if int(attrs["ApproximateNumberOfMessages"]) or int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            ):
                return False
        return True

    wait_for(drained, 30, "email's queue and DLQ to drain")
    assert len(emulator.sent_emails(buyer)) == 1
    assert api.order(order_id)["services"]["email"]["status"] == "processed"
