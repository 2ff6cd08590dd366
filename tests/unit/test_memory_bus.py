"""MemoryBus specifics: the virtual clock, drain, capacity and misuse errors."""

from __future__ import annotations

import asyncio

import pytest

from framework import Command, Context, Event, Overloaded, Worker
from framework.testing import MemoryBroker, MemoryBus


class Job(Command):
    type_name = "tests.memory.Job"
    n: int


class Happened(Event):
    type_name = "tests.memory.Happened"


async def test_retry_delays_run_on_the_virtual_clock(test_bus: MemoryBus) -> None:
    """A 100 s backoff costs no real time; the clock shows at least the nominal delays."""
    attempts: list[tuple[int, float]] = []

    class Slow(Worker):
        queue = "mem.slow"
        retry_base_delay = 100.0
        retry_max_delay = 1000.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            attempts.append((ctx.attempt, test_bus.now))
            if ctx.attempt < 3:
                raise RuntimeError("later")

    await test_bus.start_worker(Slow)
    await test_bus.send(Job(n=1))
    await asyncio.wait_for(test_bus.drain(), 2)
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert attempts[1][1] >= 100 and attempts[2][1] - attempts[1][1] >= 200


async def test_shorter_retry_overtakes_longer_one(test_bus: MemoryBus) -> None:
    """Delays keep their order: a message retried later by another worker comes back first."""
    order: list[str] = []

    class Fast(Worker):
        queue = "mem.fast"
        retry_base_delay = 1.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            order.append(f"fast{ctx.attempt}")
            if ctx.attempt == 1:
                raise RuntimeError("again")

    class Slow(Worker):
        queue = "mem.slower"
        retry_base_delay = 50.0
        retry_max_delay = 100.0

        async def handle(self, msg: Happened, ctx: Context) -> None:
            order.append(f"slow{ctx.attempt}")
            if ctx.attempt == 1:
                raise RuntimeError("again")

    await test_bus.start_worker(Slow)
    await test_bus.start_worker(Fast)
    await test_bus.publish(Happened())
    await test_bus.send(Job(n=1))
    await test_bus.drain()
    assert order.index("fast2") < order.index("slow2")


async def test_drain_times_out_naming_what_is_stuck(test_bus: MemoryBus) -> None:
    """A handler that never returns makes drain fail with a clear message, not hang."""
    release = asyncio.Event()

    class Stuck(Worker):
        queue = "mem.stuck"

        async def handle(self, msg: Job, ctx: Context) -> None:
            await release.wait()

    await test_bus.start_worker(Stuck)
    await test_bus.send(Job(n=1))
    with pytest.raises(TimeoutError, match="unsettled deliveries"):
        await test_bus.drain(timeout=0.2)
    release.set()
    await test_bus.drain()


async def test_full_queue_raises_overloaded(test_bus: MemoryBus) -> None:
    """max_queue_length with nobody consuming: the next send raises Overloaded."""

    class Bounded(Worker):
        queue = "mem.bounded"
        max_queue_length = 2

        async def handle(self, msg: Job, ctx: Context) -> None:
            return None

    await test_bus.declare(Bounded)
    await test_bus.send(Job(n=1))
    await test_bus.send(Job(n=2))
    with pytest.raises(Overloaded, match="full"):
        await test_bus.send(Job(n=3))
    assert len(test_bus.messages("mem.bounded")) == 2


async def test_send_and_publish_reject_the_wrong_kind(test_bus: MemoryBus) -> None:
    """Like Bus: send() takes commands, publish() takes events."""
    with pytest.raises(TypeError, match="use publish"):
        await test_bus.send(Happened())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use send"):
        await test_bus.publish(Job(n=1))  # type: ignore[arg-type]


async def test_two_services_share_one_broker() -> None:
    """Buses on one MemoryBroker see each other's queues, like services on one RabbitMQ."""
    broker = MemoryBroker()
    got: list[int] = []

    class Consumer(Worker):
        queue = "mem.shared"

        async def handle(self, msg: Job, ctx: Context) -> None:
            got.append(msg.n)

    async with MemoryBus(broker=broker, service="a") as a, \
            MemoryBus(broker=broker, service="b") as b:
        await b.start_worker(Consumer)
        await a.send(Job(n=9))
        await a.drain()
    assert got == [9]
