"""Shedding by forecast on the in-memory bus: the same reporter, follower and refusal as
on RabbitMQ, with no broker (report intervals and deadlines on the real clock)."""

from __future__ import annotations

import asyncio
import time

import pytest

from framework import Command, Context, Overloaded, Settings, Worker
from framework.testing import MemoryBus, eventually

pytestmark = pytest.mark.unit

HANDLING = 0.02  # one at a time: about 50 per second


class Slow(Command):
    type_name = "tests.memory_shedding.Slow"
    n: int


class SlowWorker(Worker):
    queue = "memory-shedding"
    prefetch = 1

    async def handle(self, msg: Slow, ctx: Context) -> None:
        await asyncio.sleep(HANDLING)


async def test_memory_bus_refuses_a_send_its_queue_would_make_expire() -> None:
    """30 queued at ~50/s is ~0.6 s: a 0.1 s ttl is refused (retry_after > 0), a 30 s one
    and one without a deadline are sent; all accepted are handled."""
    settings = Settings(shed_by_forecast=True, load_report_interval=0.05)
    async with MemoryBus(settings=settings) as bus:
        worker = await bus.start_worker(SlowWorker)
        for n in range(30):
            await bus.send(Slow(n=n))
        follower = bus.load
        assert follower is not None

        def predicted() -> float:
            return follower.board.predicted_wait(Slow.type_name, time.monotonic()) or 0.0

        await eventually(lambda: predicted() > 0.2, timeout=5)
        with pytest.raises(Overloaded) as refused:
            await bus.send(Slow(n=100), ttl=0.1)
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        await bus.send(Slow(n=101), ttl=30.0)
        await bus.drain()
        assert worker.stats.handled == 31
        assert bus.dead_letters(SlowWorker.queue) == []


async def test_memory_bus_without_shedding_follows_nothing() -> None:
    """Off by default: the in-memory bus follows no load reports."""
    async with MemoryBus() as bus:
        assert bus.load is None
