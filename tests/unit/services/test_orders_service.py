"""orders: stores the order once, announces it, asks payments to charge it."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework import PermanentError
from framework.outbox import AlreadyHandled
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import ChargePayment
from services.orders.store import OrderStore
from services.orders.worker import OrdersSettings, OrderWorker
from tests.unit.services.service_fakes import RecordingBus, context, worker_database


def worker(bus: RecordingBus, **settings: object) -> OrderWorker:
    return OrderWorker(bus, OrdersSettings(**settings))  # type: ignore[arg-type]


async def test_place_order_stores_announces_and_requests_the_charge(tmp_path: Path) -> None:
    """One PlaceOrder: a stored order, OrderPlaced published, ChargePayment sent."""
    bus = RecordingBus()
    orders = worker(bus, db=str(tmp_path / "orders.db"))
    async with worker_database(orders, bus) as database:
        await orders.handle(
            PlaceOrder(order_id="o1", customer_id="c1", amount_cents=500),
            context(bus, database=database),
        )
    assert orders.orders.status("o1") == "placed"
    assert bus.published == [OrderPlaced(order_id="o1", customer_id="c1", amount_cents=500)]
    assert bus.sent == [ChargePayment(order_id="o1", customer_id="c1", amount_cents=500)]


async def test_a_retried_delivery_republishes_the_same_keys() -> None:
    """Keys derive from the incoming key, so a retry's messages are deduplicated downstream."""
    first, second = RecordingBus(), RecordingBus()
    msg = PlaceOrder(order_id="o1", customer_id="c1", amount_cents=500)
    for bus, attempt in ((first, 1), (second, 2)):  # two replicas, each its own database
        orders = worker(bus)
        async with worker_database(orders, bus) as database:
            await orders.handle(msg, context(bus, "key-1", attempt=attempt, database=database))
    assert first.keys == second.keys and len(set(first.keys)) == 2


async def test_a_redelivery_to_the_same_database_is_refused_as_handled(tmp_path: Path) -> None:
    """The inbox row committed with the order: the same key cannot commit twice."""
    bus = RecordingBus()
    orders = worker(bus, db=str(tmp_path / "orders.db"))
    msg = PlaceOrder(order_id="o1", customer_id="c1", amount_cents=500)
    async with worker_database(orders, bus) as database:
        await orders.handle(msg, context(bus, "key-1", database=database))
        with pytest.raises(AlreadyHandled):
            await orders.handle(msg, context(bus, "key-1", attempt=2, database=database))
    assert len(bus.messages()) == 2 and orders.orders.count() == 1


async def test_an_order_over_the_limit_is_refused_for_good() -> None:
    """Over max_amount_cents: PermanentError (straight to the DLQ), nothing published."""
    bus = RecordingBus()
    with pytest.raises(PermanentError, match="exceeds the limit"):
        await worker(bus, max_amount_cents=1000).handle(
            PlaceOrder(order_id="o1", customer_id="c1", amount_cents=1001), context(bus)
        )
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
