"""A queue that exists with other arguments than the worker declares stops the worker at
start with one clear error naming the argument and how to migrate (not a
PRECONDITION_FAILED from deep inside aio-pika)."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from framework import Bus, Command, Context, Worker
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from framework.wire.declare import QueueArgumentsDiffer


class Errand(Command):
    type_name = "tests.declare_conflicts.Errand"
    n: int


async def test_worker_refuses_a_queue_with_another_delivery_limit(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """The queue exists with x-delivery-limit 3, the worker declares 10: it does not start,
    and the error says which argument, which Worker setting and how to migrate."""

    class ErrandWorker(Worker):
        queue = queue_name
        delivery_limit = 10

        async def handle(self, msg: Errand, ctx: Context) -> None:
            pass

    connection = await aio_pika.connect_robust(amqp_url)
    try:
        declared = next(q for q in build_spec(ErrandWorker).topology.queues if q.name == queue_name)
        async with connection.channel() as channel:  # the same queue, but with limit 3
            await channel.declare_queue(
                queue_name, durable=True, arguments={**declared.arguments, "x-delivery-limit": 3}
            )
        worker = ErrandWorker(bus)
        with pytest.raises(QueueArgumentsDiffer) as raised:
            await asyncio.wait_for(worker.run(), 30)
        text = str(raised.value)
        assert f"queue {queue_name!r} exists with another x-delivery-limit" in text
        assert "(delivery_limit)" in text and "delete_queue" in text
        assert "\n" not in text
    finally:
        await broker_admin.delete_queues(queue_name)
        await connection.close()
