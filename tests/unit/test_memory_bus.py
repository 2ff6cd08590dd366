"""MemoryBus specifics: the virtual clock, drain, capacity and misuse errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from framework import Bus, Command, Context, Event, MessageTooLarge, Overloaded, Worker
from framework.errors import RequestTimeout
from framework.testing import MemoryBroker, MemoryBus
from framework.testing.memory_port import MemoryPort
from framework.wire import names
from framework.wire.acks import AckCoalescer
from framework.wire.envelope import Envelope
from framework.wire.message_size import MIB


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

    async with (
        MemoryBus(broker=broker, service="a") as a,
        MemoryBus(broker=broker, service="b") as b,
    ):
        await b.start_worker(Consumer)
        await a.send(Job(n=9))
        await a.drain()
    assert got == [9]


# ---- request/reply (the shared behaviour is in tests/integration/test_bus_contract.py) ----


class Double(Command):
    type_name = "tests.memory.Double"
    n: int


class Doubler(Worker):
    queue = "mem.doubler"

    async def handle(self, msg: Double, ctx: Context) -> int:
        return msg.n * 2


async def test_request_needs_no_drain_and_is_recorded(test_bus: MemoryBus) -> None:
    """Awaiting the request is enough; it is a published command carrying reply_to."""
    await test_bus.start_worker(Doubler)
    assert (
        await asyncio.wait_for(test_bus.request(Double(n=4), timeout=5, idempotency_key="d-4"), 1)
        == 8
    )
    [published] = test_bus.published
    assert (published.key, published.message) == ("d-4", Double(n=4))
    assert published.deadline_ms is not None


async def test_request_skips_retry_delays_within_its_timeout(test_bus: MemoryBus) -> None:
    """A retry due in 20 virtual seconds fits a 60 s timeout: answered without real waiting."""

    class Flaky(Worker):
        queue = "mem.flaky-request"
        retry_base_delay = 20.0
        retry_max_delay = 20.0

        async def handle(self, msg: Double, ctx: Context) -> int:
            if ctx.attempt == 1:
                raise ConnectionError("down")
            return msg.n * 2

    await test_bus.start_worker(Flaky)
    assert await asyncio.wait_for(test_bus.request(Double(n=5), timeout=60), 2) == 10
    assert test_bus.now >= 10


async def test_request_does_not_skip_past_its_timeout(test_bus: MemoryBus) -> None:
    """A retry due after the timeout is not released early: RequestTimeout, clock untouched."""

    class Slow(Worker):
        queue = "mem.slow-request"
        retry_base_delay = 100.0
        retry_max_delay = 100.0

        async def handle(self, msg: Double, ctx: Context) -> int:
            if ctx.attempt == 1:
                raise ConnectionError("down")
            return msg.n * 2

    await test_bus.start_worker(Slow)
    with pytest.raises(RequestTimeout, match=r"within 0\.3s"):
        await test_bus.request(Double(n=1), timeout=0.3)
    assert test_bus.now == 0
    await test_bus.drain()  # the retry runs later; its reply (if any) is discarded quietly


async def test_requests_from_two_buses_get_their_own_replies() -> None:
    """Each bus on a shared broker has its own reply queue; it goes away on close."""
    broker = MemoryBroker()
    async with MemoryBus(broker=broker, service="server") as server:
        await server.start_worker(Doubler)
        async with (
            MemoryBus(broker=broker, service="a") as a,
            MemoryBus(broker=broker, service="b") as b,
        ):
            results = await asyncio.gather(
                *(bus.request(Double(n=n), timeout=5) for n in range(10) for bus in (a, b))
            )
        assert results == [n * 2 for n in range(10) for _ in (a, b)]
        assert not [q for q in broker.queue_names() if q.startswith(names.DIRECT_REPLY_TO)]


async def test_request_takes_only_commands(test_bus: MemoryBus) -> None:
    with pytest.raises(TypeError, match="takes a Command"):
        await test_bus.request(Happened())  # type: ignore[arg-type]


async def test_keyless_messages_behave_as_on_rabbitmq(test_bus: MemoryBus) -> None:
    """Without message_id: dead-lettered as invalid by default, handled once per body by a
    `keyless = "content"` worker (the same code as on the real broker)."""
    handled: list[int] = []

    class Strict(Worker):
        queue = "mem.keyless.strict"

        async def handle(self, msg: Job, ctx: Context) -> None:
            handled.append(msg.n)

    class ByContent(Worker):
        queue = "mem.keyless.content"
        keyless = "content"

        async def handle(self, msg: Job, ctx: Context) -> None:
            handled.append(msg.n * 10)

    await test_bus.start_worker(Strict)
    await test_bus.start_worker(ByContent)
    for queue in ("mem.keyless.strict", "mem.keyless.content"):
        for n in (1, 2, 1):
            await test_bus.publish_raw(queue, b'{"n": %d}' % n, type=Job.type_name, message_id=None)
    await asyncio.wait_for(test_bus.drain(), 2)
    assert sorted(handled) == [10, 20]
    dead = test_bus.dead_letters("mem.keyless.strict")
    assert len(dead) == 3 and all(m.headers[names.REASON] == "invalid" for m in dead)
    assert test_bus.dead_letters("mem.keyless.content") == []


class _Big(Event):
    type_name = "tests.memory.Big"
    blob: str


async def test_memory_bus_refuses_a_body_above_the_max_message_size() -> None:
    """The in-memory bus refuses what RabbitMQ 4.x would (above 16 MiB), as the real one."""
    async with MemoryBus() as bus:
        with pytest.raises(MessageTooLarge, match="claim check"):
            await bus.publish(_Big(blob="x" * (16 * MIB + 1)))


class CountingPort(MemoryPort):
    """The in-memory port, counting what crosses it."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.routes: list[tuple[str, str]] = []
        self.ackers: list[object] = []

    async def publish(self, envelope: Envelope, exchange: str, routing_key: str, **kw: Any) -> None:
        self.routes.append((exchange, routing_key))
        await super().publish(envelope, exchange, routing_key, **kw)

    def acker(self, *, max_batch: int, max_delay: float, prefetch: int) -> AckCoalescer:
        acker = super().acker(max_batch=max_batch, max_delay=max_delay, prefetch=prefetch)
        self.ackers.append(acker)
        return acker


async def test_memory_bus_runs_the_bus_code_over_its_port() -> None:
    """MemoryBus has no send/publish/request of its own: sends, retry copies and acks of its
    workers cross the broker port through the production code (Bus, settle, AckCoalescer)."""
    for verb in ("send", "publish", "send_many", "request", "declare"):
        assert getattr(MemoryBus, verb) is getattr(Bus, verb), verb

    class Flaky(Worker):
        queue = "mem.port"

        async def handle(self, msg: Job, ctx: Context) -> None:
            if ctx.attempt < 2:
                raise RuntimeError("once")

    async with MemoryBus() as bus:
        port = CountingPort(bus.broker)
        bus.port = port
        await bus.start_worker(Flaky)
        await bus.send(Job(n=1))
        await bus.drain()
    assert port.routes[0] == (names.COMMANDS_EXCHANGE, Job.type_name)
    assert [exchange for exchange, _ in port.routes[1:]] == [names.moves_exchange("mem.port")]
    [acker] = port.ackers
    assert type(acker) is AckCoalescer and acker.frames == 2  # the failed try and the success
