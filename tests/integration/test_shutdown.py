"""Graceful stop: in-flight handlers finish and are acked; nothing is lost or run twice."""

from __future__ import annotations

import asyncio
from collections import Counter

from framework import Bus, Command, Context, Worker
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory


class Slow(Command):
    type_name = "tests.shutdown.Slow"
    n: int


async def test_stop_drains_ten_slow_handlers(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """stop() with 10 slow handlers in flight lets them finish; the rest stay queued; a new
    worker handles the rest; every message is handled exactly once."""
    handled: Counter[int] = Counter()
    started: Counter[int] = Counter()
    ten_started = asyncio.Event()

    class SlowWorker(Worker):
        queue = queue_name
        prefetch = 10

        async def handle(self, msg: Slow, ctx: Context) -> None:
            started[msg.n] += 1
            if len(started) == 10:
                ten_started.set()
            await asyncio.sleep(1.0)
            handled[msg.n] += 1

    first = SlowWorker(bus)
    run = asyncio.create_task(first.run())
    await first.wait_ready()
    for n in range(15):
        await bus.send(Slow(n=n))
    await asyncio.wait_for(ten_started.wait(), 10)
    await first.stop()
    await run
    assert sum(handled.values()) == 10
    assert first.stats.handled == 10
    assert await broker_admin.depth(queue_name) == 5  # nothing unacked came back twice

    all_done = asyncio.Event()

    class Rest(SlowWorker):
        async def handle(self, msg: Slow, ctx: Context) -> None:
            await super().handle(msg, ctx)
            if sum(handled.values()) == 15:
                all_done.set()

    await worker_factory(Rest)
    await asyncio.wait_for(all_done.wait(), 10)
    assert handled == Counter(dict.fromkeys(range(15), 1))


async def test_handler_past_grace_is_cancelled_and_requeued(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A handler still running when the grace period ends is cancelled without an ack."""
    entered = asyncio.Event()

    class Stuck(Worker):
        queue = queue_name
        shutdown_grace = 0.2

        async def handle(self, msg: Slow, ctx: Context) -> None:
            entered.set()
            await asyncio.sleep(60)

    worker = Stuck(bus)
    run = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        await bus.send(Slow(n=1))
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.wait_for(worker.stop(), 10)
        await run
        assert worker.stats.handled == 0
        assert await broker_admin.wait_for_depth(queue_name, 1, timeout=10) == 1
    finally:
        await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())


async def test_stop_after_bus_closed_does_not_hang(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Closing the bus before stopping its worker must not make stop() hang."""

    class Idle(Worker):
        queue = queue_name

        async def handle(self, msg: Slow, ctx: Context) -> None:
            return None

    bus = Bus.connect(amqp_url, service="tests")
    await bus.start()
    worker = Idle(bus)
    run = asyncio.create_task(worker.run())
    await worker.wait_ready()
    await bus.close()
    try:
        await asyncio.wait_for(worker.stop(), 15)
        await asyncio.wait_for(run, 5)
    finally:
        await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())
