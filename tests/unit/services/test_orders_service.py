"""orders: stores the order once, announces it, asks payments to charge it."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_fakes import RecordingBus, context

from framework import PermanentError
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import ChargePayment
from services.orders.store import OrderStore
from services.orders.worker import OrdersSettings, OrderWorker


def worker(bus: RecordingBus, **settings: object) -> OrderWorker:
    return OrderWorker(bus, OrdersSettings(**settings))  # type: ignore[arg-type]


async def test_place_order_stores_announces_and_requests_the_charge() -> None:
    """One PlaceOrder: a stored order, OrderPlaced published, ChargePayment sent."""
    bus = RecordingBus()
    orders = worker(bus)
    await orders.handle(PlaceOrder(order_id="o1", customer_id="c1", amount_cents=500),
                        context(bus))
    assert orders.orders.status("o1") == "placed"
    assert bus.published == [OrderPlaced(order_id="o1", customer_id="c1", amount_cents=500)]
    assert bus.sent == [ChargePayment(order_id="o1", customer_id="c1", amount_cents=500)]


async def test_a_retried_delivery_republishes_the_same_keys() -> None:
    """Keys derive from the incoming key, so a retry's messages are deduplicated downstream."""
    first, second = RecordingBus(), RecordingBus()
    msg = PlaceOrder(order_id="o1", customer_id="c1", amount_cents=500)
    await worker(first).handle(msg, context(first, "key-1", attempt=1))
    await worker(second).handle(msg, context(second, "key-1", attempt=2))
    assert first.keys == second.keys and len(set(first.keys)) == 2


async def test_an_order_over_the_limit_is_refused_for_good() -> None:
    """Over max_amount_cents: PermanentError (straight to the DLQ), nothing published."""
    bus = RecordingBus()
    with pytest.raises(PermanentError, match="exceeds the limit"):
        await worker(bus, max_amount_cents=1000).handle(
            PlaceOrder(order_id="o1", customer_id="c1", amount_cents=1001), context(bus))
    assert bus.messages() == []


def test_store_adds_each_order_once_and_persists(tmp_path: Path) -> None:
    """`add` is insert-once; the SQLite file keeps orders across reopening."""
    path = tmp_path / "orders.db"
    store = OrderStore(path)
    assert store.add("o1", "c1", 100)
    assert not store.add("o1", "c1", 100)
    store.close()
    reopened = OrderStore(path)
    assert reopened.count() == 1 and reopened.status("o1") == "placed"
    reopened.close()
