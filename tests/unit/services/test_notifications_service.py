"""notifications: receipts from payment events using only the local customers replica."""

from __future__ import annotations

import pytest

from framework import ApplyResult, Bus
from framework.testing import MemoryBroker, MemoryBus
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
from tests.unit.services.service_fakes import RecordingBus, context

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


async def test_two_instances_each_keep_every_customer() -> None:
    """Scaled out (two processes, one broker): both replicas get every CustomerUpdated, and
    each payment, taken by one of them, becomes one SendReceipt."""
    broker = MemoryBroker()
    workers: list[NotificationWorker] = []

    def instance(name: str) -> type[NotificationWorker]:
        class Instance(NotificationWorker):
            def __init__(self, bus: Bus) -> None:
                super().__init__(bus, NotificationsSettings(instance=name, refresh_every=3600))
                workers.append(self)

        return Instance

    async with (
        MemoryBus(service="notifications", broker=broker) as first,
        MemoryBus(service="notifications", broker=broker) as second,
        MemoryBus(service="tests", broker=broker) as tests,
    ):
        await tests.start_worker(ReceiptWorker)
        await first.start_worker(instance("a"))
        await second.start_worker(instance("b"))
        for n in range(6):
            await tests.publish(
                CustomerUpdated(customer_id=f"c{n}", version=1, name="N", email=f"{n}@x")
            )
        await tests.drain()
        assert [len(w.customers) for w in workers] == [6, 6]
        for n in range(6):
            await tests.publish(
                PaymentSucceeded(
                    order_id=f"o{n}", customer_id=f"c{n}", amount_cents=1, payment_id="p"
                )
            )
        await tests.drain()
        sent = first.published_of(SendReceipt) + second.published_of(SendReceipt)
        assert sorted(m.order_id for m in sent) == [f"o{n}" for n in range(6)]
        assert sorted(m.order_id for m in tests.published_of(ReceiptSent)) == [
            f"o{n}" for n in range(6)
        ]


async def test_a_dead_feed_makes_the_instance_unhealthy(test_bus: MemoryBus) -> None:
    """If the instance's own feed stops, the replica would go stale unseen: `/healthz` and
    `/readyz` (alive, receiving) say so."""
    worker = await test_bus.start_worker(NotificationWorker)
    assert worker.feed is not None
    assert worker.feed.spec.queue.startswith("notifications.customers.")
    assert worker.alive and worker.receiving
    await worker.feed.stop()
    assert not worker.alive and not worker.receiving


def test_receipt_text() -> None:
    """The receipt names the customer, the order and the amount."""
    email = receipt_email("Alice", "a@example.com", "o1", 1250, "paid")
    assert email.subject == "Receipt for order o1" and "12.50" in email.body
