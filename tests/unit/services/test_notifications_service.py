"""notifications: receipts from payment events using only the local customers replica."""

from __future__ import annotations

import pytest
from service_fakes import RecordingBus, context

from framework import ApplyResult
from schemas.customers import CustomerUpdated
from schemas.notifications import ReceiptSent, SendReceipt
from schemas.payments import PaymentFailed, PaymentSucceeded
from services.notifications.mailer import Mailer, receipt_email
from services.notifications.worker import (
    CustomerNotReplicated,
    NotificationsSettings,
    NotificationWorker,
    ReceiptWorker,
)

ALICE = CustomerUpdated(customer_id="c1", version=1, name="Alice", email="alice@example.com")
PAID = PaymentSucceeded(order_id="o1", customer_id="c1", amount_cents=1250, payment_id="p")


def notifications(bus: RecordingBus) -> NotificationWorker:
    return NotificationWorker(bus, NotificationsSettings())  # type: ignore[arg-type]


async def test_customer_updates_feed_the_replica() -> None:
    """CustomerUpdated events land in the replica; a repeated event is a duplicate."""
    bus = RecordingBus()
    worker = notifications(bus)
    await worker.handle(ALICE, context(bus, "e1"))
    await worker.handle(ALICE, context(bus, "e1"))
    assert worker.customers.get("c1") == ALICE
    assert worker.customers.counts[ApplyResult.DUPLICATE] == 1
    assert bus.messages() == []


async def test_payment_outcome_becomes_a_receipt_from_the_replica() -> None:
    """Name and email come from the local replica; nothing asks the customers service."""
    bus = RecordingBus()
    worker = notifications(bus)
    worker.customers.apply(ALICE, event_key="e1")
    await worker.handle(PAID, context(bus))
    await worker.handle(
        PaymentFailed(order_id="o2", customer_id="c1", amount_cents=5, reason="card declined"),
        context(bus, "m-2"),
    )
    assert bus.sent == [
        SendReceipt(
            order_id="o1",
            customer_id="c1",
            name="Alice",
            email="alice@example.com",
            amount_cents=1250,
            outcome="paid",
        ),
        SendReceipt(
            order_id="o2",
            customer_id="c1",
            name="Alice",
            email="alice@example.com",
            amount_cents=5,
            outcome="declined",
        ),
    ]


async def test_unknown_customer_is_retried_not_requested() -> None:
    """Not replicated yet: a transient error (retried later), no call to the owner."""
    bus = RecordingBus()
    with pytest.raises(CustomerNotReplicated, match="not in the local replica"):
        await notifications(bus).handle(PAID, context(bus))
    assert bus.messages() == []


async def test_receipt_worker_sends_the_email_and_announces_it() -> None:
    """SendReceipt: one email out, ReceiptSent published."""
    bus = RecordingBus()
    mailer = Mailer()
    await ReceiptWorker(bus, mailer).handle(  # type: ignore[arg-type]
        SendReceipt(
            order_id="o1",
            customer_id="c1",
            name="Alice",
            email="a@example.com",
            amount_cents=1250,
            outcome="paid",
        ),
        context(bus),
    )
    assert [e.to for e in mailer.sent] == ["a@example.com"]
    assert bus.published == [ReceiptSent(order_id="o1", email="a@example.com", outcome="paid")]


def test_receipt_text() -> None:
    """The receipt names the customer, the order and the amount."""
    email = receipt_email("Alice", "a@example.com", "o1", 1250, "paid")
    assert email.subject == "Receipt for order o1" and "12.50" in email.body
