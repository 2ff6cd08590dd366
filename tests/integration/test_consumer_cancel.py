"""A consumer cancelled by the broker (its queue deleted) is re-subscribed, not silently lost."""

from __future__ import annotations

import asyncio
import contextlib

from framework import Bus, Command, Context, Unroutable, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire.consumer import Consumer


class Ping(Command):
    type_name = "tests.cancel.Ping"
    n: int


async def test_deleted_queue_is_redeclared_and_consumed_again(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """After an operator deletes the worker's queue, the worker re-declares it, binds it and
    consumes again: commands sent afterwards are handled."""
    seen: set[int] = set()

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            seen.add(msg.n)

    await worker_factory(PingWorker)
    await bus.send(Ping(n=1))
    await eventually(lambda: 1 in seen, timeout=10)
    await broker_admin.delete_queues(queue_name)

    async def send_until_handled() -> None:
        n = 100
        while not any(k >= 100 for k in seen):
            n += 1
            with contextlib.suppress(Unroutable):  # until the queue and binding are back
                await bus.send(Ping(n=n))
            await asyncio.sleep(0.2)

    await asyncio.wait_for(send_until_handled(), 30)


async def test_consumer_subscribes_again_when_its_channel_is_reopened(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A channel error closes the consuming channel; aio-pika reopens it, and the worker
    subscribes on the new channel (aio-pika does not restore a raw aiormq consumer)."""
    seen: set[int] = set()

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            seen.add(msg.n)

    worker = await worker_factory(PingWorker)
    await bus.send(Ping(n=1))
    await eventually(lambda: 1 in seen, timeout=10)
    consumer = worker._consumer
    assert isinstance(consumer, Consumer)  # the RabbitMQ port's subscription
    old_channel = consumer._raw
    # acking a tag the broker never delivered is a channel error: it closes the channel
    await old_channel.basic_ack(10**9)
    await eventually(lambda: old_channel.is_closed, timeout=10)
    await eventually(lambda: consumer.consuming and consumer._raw is not old_channel, timeout=20)
    await bus.send(Ping(n=2))
    await eventually(lambda: 2 in seen, timeout=10)
