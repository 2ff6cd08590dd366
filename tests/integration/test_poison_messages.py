"""Undecodable, schema-invalid and unknown-type messages go to the DLQ at once, with reasons."""

from __future__ import annotations

import asyncio

from framework import Bus, Command, Context, Worker
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names


class Order(Command):
    type_name = "tests.poison.Order"
    order_id: str
    amount_cents: int


async def test_malformed_and_invalid_go_to_dlq_while_valid_flow(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Not-JSON, schema-invalid and unknown-type bodies land in Q.dlq; valid ones are handled."""
    handled: list[str] = []
    all_valid = asyncio.Event()

    class OrderWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Order, ctx: Context) -> None:
            handled.append(msg.order_id)
            if len(handled) == 10:
                all_valid.set()

    worker = await worker_factory(OrderWorker)
    for i in range(5):
        await bus.send(Order(order_id=f"a{i}", amount_cents=1))
    await broker_admin.publish_raw(
        queue_name, b"{not json", type=Order.type_name, message_id="bad-json"
    )
    await broker_admin.publish_raw(
        queue_name, b'{"order_id": "x"}', type=Order.type_name, message_id="bad-schema"
    )
    await broker_admin.publish_raw(
        queue_name, b"{}", type="tests.poison.Nope", message_id="bad-type"
    )
    for i in range(5):
        await bus.send(Order(order_id=f"b{i}", amount_cents=1))

    await asyncio.wait_for(all_valid.wait(), 20)
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 3) == 3
    dead = {m.message_id: m for m in await broker_admin.drain(dlq)}
    assert set(dead) == {"bad-json", "bad-schema", "bad-type"}
    for message in dead.values():
        assert message.headers[names.REASON] == "invalid"
        assert message.headers[names.ORIGINAL_QUEUE] == queue_name
        assert message.headers[names.ATTEMPTS] == 1
        assert message.headers[names.FAILED_AT]
    assert "not valid JSON" in dead["bad-json"].headers[names.ERROR]
    assert "amount_cents" in dead["bad-schema"].headers[names.ERROR]
    assert "unknown message type" in dead["bad-type"].headers[names.ERROR]
    assert dead["bad-json"].body == b"{not json"
    assert sorted(handled) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])
    assert worker.stats.dead_lettered == 3
