"""The orders service on the in-memory bus (no broker): routing, keys, DLQ."""

from __future__ import annotations

import pytest

from framework import Context, Worker
from framework.testing import MemoryBus
from framework.wire import names
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import ChargePayment
from services.orders.worker import OrderWorker


class PaymentsStub(Worker):
    """Stands in for the payments service: only so ChargePayment has somewhere to go."""

    queue = "payments-stub"

    async def handle(self, msg: ChargePayment, ctx: Context) -> None:
        return None


@pytest.fixture(autouse=True)
async def payments_queue(test_bus: MemoryBus) -> None:
    await test_bus.declare(PaymentsStub)


async def test_place_order_announces_order_placed(test_bus: MemoryBus) -> None:
    """PlaceOrder is handled once and OrderPlaced is published in the same conversation."""
    worker = await test_bus.start_worker(OrderWorker)
    await test_bus.send(
        PlaceOrder(order_id="42", customer_id="c1", amount_cents=999), idempotency_key="order-42"
    )
    await test_bus.drain()
    assert test_bus.published_of(OrderPlaced) == [
        OrderPlaced(order_id="42", customer_id="c1", amount_cents=999)
    ]
    [event] = [p for p in test_bus.published if isinstance(p.message, OrderPlaced)]
    assert (event.correlation_id, event.causation_id) == ("order-42", "order-42")
    assert worker.stats.handled == 1


async def test_retried_order_republishes_the_same_key(test_bus: MemoryBus) -> None:
    """A redelivered PlaceOrder (same key, new queue) derives the same OrderPlaced key."""
    first = await test_bus.start_worker(OrderWorker)
    order = PlaceOrder(order_id="7", customer_id="c", amount_cents=1)
    await test_bus.send(order, idempotency_key="order-7")
    await test_bus.drain()
    await first.stop()  # another replica (its own in-memory database) gets the redelivery
    await test_bus.idempotency.close()  # forget handled keys: as if another replica got it
    await test_bus.start_worker(OrderWorker)
    await test_bus.send(order, idempotency_key="order-7")
    await test_bus.drain()
    keys = [p.key for p in test_bus.published if isinstance(p.message, OrderPlaced)]
    assert len(keys) == 2 and keys[0] == keys[1]


async def test_a_redelivered_order_is_not_handled_twice_by_one_replica(test_bus: MemoryBus) -> None:
    """Its transaction committed: the redelivery is acked as a duplicate, nothing re-sent."""
    worker = await test_bus.start_worker(OrderWorker)
    order = PlaceOrder(order_id="8", customer_id="c", amount_cents=1)
    await test_bus.send(order, idempotency_key="order-8")
    await test_bus.drain()
    await test_bus.idempotency.close()  # a fresh key store: only the inbox remembers
    await test_bus.send(order, idempotency_key="order-8")
    await test_bus.drain()
    assert len(test_bus.published_of(OrderPlaced)) == 1
    assert (worker.stats.handled, worker.stats.duplicates) == (1, 1)


async def test_invalid_order_goes_to_dlq(test_bus: MemoryBus) -> None:
    """A PlaceOrder failing its schema (amount 0) is dead-lettered as invalid."""
    await test_bus.start_worker(OrderWorker)
    await test_bus.publish_raw(
        "orders",
        b'{"order_id": "1", "customer_id": "c", "amount_cents": 0}',
        type=PlaceOrder.type_name,
    )
    await test_bus.drain()
    [dead] = test_bus.dead_letters("orders")
    assert dead.reason == "invalid"
    assert "amount_cents" in (dead.error or "")
    assert dead.headers[names.ORIGINAL_QUEUE] == "orders"
    assert test_bus.published_of(OrderPlaced) == []
