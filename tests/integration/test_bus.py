"""Bus: confirmed publishing, clear errors for unroutable, full queues and dead brokers."""

from __future__ import annotations

import contextlib

import pytest

from framework import (
    BrokerUnavailable,
    Bus,
    Command,
    Context,
    Event,
    Overloaded,
    Settings,
    Unroutable,
    Worker,
)
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory


class NobodyHandlesThis(Command):
    type_name = "tests.bus.NobodyHandlesThis"


class SomethingHappened(Event):
    type_name = "tests.bus.SomethingHappened"


class Fill(Command):
    type_name = "tests.bus.Fill"
    n: int


async def test_unroutable_command_raises(bus: Bus) -> None:
    """Sending a command no queue handles raises Unroutable instead of dropping it."""
    with pytest.raises(Unroutable, match="no queue is bound"):
        await bus.send(NobodyHandlesThis())


async def test_event_without_subscribers_is_fine(bus: Bus) -> None:
    """Publishing an event nobody subscribes to is confirmed and returns its key."""
    key = await bus.publish(SomethingHappened(), idempotency_key="evt-1")
    assert key == "evt-1"


async def test_send_returns_generated_key(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """Without an idempotency key, a fresh one is generated and returned."""

    class Sink(Worker):
        queue = queue_name

        async def handle(self, msg: Fill, ctx: Context) -> None:
            return None

    await bus.declare(Sink)
    first, second = await bus.send(Fill(n=1)), await bus.send(Fill(n=2))
    assert first and second and first != second
    await worker_factory(Sink)


async def test_full_queue_raises_overloaded(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A queue at max_queue_length refuses new work: send raises Overloaded, nothing dropped."""

    class Bounded(Worker):
        queue = queue_name
        max_queue_length = 3

        async def handle(self, msg: Fill, ctx: Context) -> None:
            return None

    await bus.declare(Bounded)
    accepted = 0
    refused: Overloaded | None = None
    try:
        for n in range(10):
            try:
                await bus.send(Fill(n=n))
            except Overloaded as exc:
                refused = exc
                break
            accepted += 1
        assert refused is not None
        assert "full" in str(refused)
        # quorum queues on 3.10 may admit one message past the limit
        assert 3 <= accepted <= 4
        assert await broker_admin.depth(queue_name) == accepted
    finally:
        from framework.consume.worker_spec import build_spec

        await broker_admin.delete_worker_queues(queue_name, build_spec(Bounded).policy.tiers_ms())


async def test_connect_to_dead_port_fails_with_one_clear_error() -> None:
    """A dead broker gives BrokerUnavailable naming the masked URL, never the password."""
    settings = Settings(
        amqp_url="amqp://user:s3cret-pw@127.0.0.1:1/", connect_attempts=2, connect_timeout=1.0
    )
    with pytest.raises(BrokerUnavailable) as caught:
        async with Bus.connect(settings=settings):
            pass
    text = str(caught.value)
    assert "s3cret-pw" not in text
    assert "amqp://user:***@127.0.0.1:1/" in text
    assert "after 2 attempts" in text


async def test_send_with_retry_waits_for_room(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """With retry=RetryOnOverload, a send to a full queue waits until a worker makes room."""
    import asyncio

    from framework import RetryOnOverload

    class Bounded(Worker):
        queue = queue_name
        max_queue_length = 2

        async def handle(self, msg: Fill, ctx: Context) -> None:
            return None

    await bus.declare(Bounded)
    sent = 0
    while True:
        try:
            await bus.send(Fill(n=sent))
        except Overloaded:
            break
        sent += 1
    pauses = 0
    refused_thrice = asyncio.Event()

    async def counting_sleep(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses >= 3:
            refused_thrice.set()
        await asyncio.sleep(seconds)

    retry = RetryOnOverload(within=20.0, sleep=counting_sleep)
    late = asyncio.create_task(bus.send(Fill(n=99), retry=retry, idempotency_key="late-99"))
    await asyncio.wait_for(refused_thrice.wait(), 10)
    assert not late.done()  # refused three times, still waiting for room, not failed
    await worker_factory(Bounded)
    assert await asyncio.wait_for(late, 20) == "late-99"


async def test_send_with_retry_gives_up_after_bound(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """When no room appears within the bound, Overloaded is raised."""
    from framework import RetryOnOverload
    from framework.consume.worker_spec import build_spec

    class Bounded(Worker):
        queue = queue_name
        max_queue_length = 1

        async def handle(self, msg: Fill, ctx: Context) -> None:
            return None

    await bus.declare(Bounded)
    try:
        for n in range(2):  # fill it (3.10 quorum queues may admit one past the limit)
            with contextlib.suppress(Overloaded):
                await bus.send(Fill(n=n))
        with pytest.raises(Overloaded):
            await bus.send(Fill(n=9), retry=RetryOnOverload(within=0.5))
    finally:
        await broker_admin.delete_worker_queues(queue_name, build_spec(Bounded).policy.tiers_ms())


async def test_send_many_pipelines_confirms_and_keeps_order(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """send_many sends 500 commands with a window of unconfirmed publishes; keys in order."""
    import asyncio

    seen: list[int] = []
    done = asyncio.Event()

    class Sink(Worker):
        queue = queue_name

        async def handle(self, msg: Fill, ctx: Context) -> None:
            seen.append(msg.n)
            if len(seen) == 500:
                done.set()

    await worker_factory(Sink)
    keys = await bus.send_many(
        [Fill(n=n) for n in range(500)],
        idempotency_keys=[f"many-{n}" for n in range(500)],
        window=64,
    )
    assert keys == [f"many-{n}" for n in range(500)]
    await asyncio.wait_for(done.wait(), 30)
    assert sorted(seen) == list(range(500))


async def test_send_many_raises_first_failure(bus: Bus) -> None:
    """If a command cannot be routed, send_many raises instead of losing it silently."""
    with pytest.raises(Unroutable):
        await bus.send_many([NobodyHandlesThis() for _ in range(5)], window=2)


async def test_max_length_5_refuses_sends_6_to_10(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A queue with max length 5 and no consumer: sends 6..10 raise Overloaded (3.10 quorum
    queues may admit one extra), and the queue holds at most 5 (+1)."""
    from framework.consume.worker_spec import build_spec

    class Five(Worker):
        queue = queue_name
        max_queue_length = 5

        async def handle(self, msg: Fill, ctx: Context) -> None:
            return None

    await bus.declare(Five)
    outcomes: list[bool] = []
    try:
        for n in range(10):
            try:
                await bus.send(Fill(n=n))
                outcomes.append(True)
            except Overloaded:
                outcomes.append(False)
        assert outcomes[:5] == [True] * 5
        assert outcomes[6:] == [False] * 4
        assert await broker_admin.depth(queue_name) == sum(outcomes) <= 6
    finally:
        await broker_admin.delete_worker_queues(queue_name, build_spec(Five).policy.tiers_ms())
