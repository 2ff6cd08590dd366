"""The whole example system on the in-memory bus: order -> charge -> payment event ->
receipt, with the customer's data coming from the local replica (no broker)."""

from __future__ import annotations

from framework import Bus
from framework.testing import MemoryBus
from schemas.notifications import ReceiptSent
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import PaymentFailed, PaymentSucceeded
from services.customers.worker import CustomerWorker
from services.notifications.worker import NotificationWorker, ReceiptWorker
from services.orders.worker import OrderWorker
from services.payments.gateway import Gateway, GatewaySettings
from services.payments.worker import PaymentWorker


def reliable_gateway(decline_rate: float = 0.0) -> Gateway:
    return Gateway(
        GatewaySettings(
            latency=0.0,
            failure_rate=0.0,
            decline_rate=decline_rate,
            outage_start=0.0,
            outage_duration=0.0,
            timeout=1.0,
        )
    )


class ApprovingPayments(PaymentWorker):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, reliable_gateway())


class DecliningPayments(PaymentWorker):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, reliable_gateway(decline_rate=1.0))


async def _start_system(test_bus: MemoryBus, payments: type[PaymentWorker]) -> None:
    await test_bus.start_worker(CustomerWorker)
    await test_bus.start_worker(NotificationWorker)
    await test_bus.start_worker(ReceiptWorker)
    await test_bus.start_worker(payments)
    await test_bus.start_worker(OrderWorker)
    await test_bus.drain()  # customers announced, replica filled


async def test_paid_order_ends_in_a_receipt(test_bus: MemoryBus) -> None:
    """Every hop happens once, in one conversation, and the receipt uses replica data."""
    await _start_system(test_bus, ApprovingPayments)
    await test_bus.send(
        PlaceOrder(order_id="o1", customer_id="c3", amount_cents=1200), idempotency_key="order-o1"
    )
    await test_bus.drain()
    assert [e.order_id for e in test_bus.published_of(OrderPlaced)] == ["o1"]
    assert [e.order_id for e in test_bus.published_of(PaymentSucceeded)] == ["o1"]
    [receipt] = test_bus.published_of(ReceiptSent)
    assert (receipt.order_id, receipt.email, receipt.outcome) == (
        "o1",
        "customer3@example.com",
        "paid",
    )
    conversation = {
        p.correlation_id for p in test_bus.published if getattr(p.message, "order_id", None) == "o1"
    }
    assert conversation == {"order-o1"}
    for queue in ("orders", "payments", "notifications", "notifications.receipts"):
        assert test_bus.dead_letters(queue) == []


async def test_declined_order_gets_a_declined_receipt(test_bus: MemoryBus) -> None:
    """A decline is a business outcome: PaymentFailed and a 'declined' receipt, no DLQ."""
    await _start_system(test_bus, DecliningPayments)
    await test_bus.send(PlaceOrder(order_id="o2", customer_id="c1", amount_cents=50))
    await test_bus.drain()
    assert [e.order_id for e in test_bus.published_of(PaymentFailed)] == ["o2"]
    assert [r.outcome for r in test_bus.published_of(ReceiptSent)] == ["declined"]
    assert test_bus.dead_letters("payments") == []


async def test_same_order_twice_is_charged_once(test_bus: MemoryBus) -> None:
    """A duplicate PlaceOrder (same key) is absorbed: one charge, one receipt."""
    await _start_system(test_bus, ApprovingPayments)
    order = PlaceOrder(order_id="o3", customer_id="c2", amount_cents=700)
    await test_bus.send(order, idempotency_key="order-o3")
    await test_bus.send(order, idempotency_key="order-o3")
    await test_bus.drain()
    assert len(test_bus.published_of(PaymentSucceeded)) == 1
    assert len(test_bus.published_of(ReceiptSent)) == 1
