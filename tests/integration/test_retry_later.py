"""RetryLater on the real broker: the wait is at least `after`, no attempt is burned, the
budget dead-letters, long waits travel in hops, deadlines win."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from framework import Bus, Command, Context, RetryLater, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names


class Poll(Command):
    type_name = "tests.retry_later.Poll"
    n: int


async def test_retry_later_round_trip_waits_at_least_after(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """RetryLater(0.8) then success: the second call comes >= 0.8 s later, same attempt."""
    calls: list[tuple[int, float]] = []
    done = asyncio.Event()

    class Waits(Worker):
        queue = queue_name
        max_attempts = 1  # a burned attempt would dead-letter at once
        retry_base_delay = 0.25
        retry_max_delay = 2.0

        async def handle(self, msg: Poll, ctx: Context) -> None:
            calls.append((ctx.attempt, time.monotonic()))
            if len(calls) == 1:
                raise RetryLater(after=0.8, reason="resource not ready")
            done.set()

    worker = await worker_factory(Waits)
    await bus.send(Poll(n=1))
    await asyncio.wait_for(done.wait(), 20)
    assert [attempt for attempt, _ in calls] == [1, 1]
    assert calls[1][1] - calls[0][1] >= 0.8
    await eventually(lambda: worker.stats.handled == 1)
    assert worker.stats.retry_laters == 1
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


async def test_retry_later_past_its_budget_goes_to_the_dlq(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """retry_later_limit=3: the fourth RetryLater dead-letters as exhausted, attempt 1."""
    calls: list[int] = []

    class NeverReady(Worker):
        queue = queue_name
        retry_later_limit = 3
        retry_base_delay = 0.1
        retry_max_delay = 0.4

        async def handle(self, msg: Poll, ctx: Context) -> None:
            calls.append(ctx.attempt)
            raise RetryLater(after=0.05, reason="still busy")

    await worker_factory(NeverReady)
    key = await bus.send(Poll(n=2))
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1, timeout=20) == 1
    [dead] = await broker_admin.drain(dlq)
    assert calls == [1, 1, 1, 1]
    assert dead.message_id == key
    assert dead.headers[names.REASON] == "exhausted"
    assert dead.headers[names.ATTEMPTS] == 1
    assert dead.headers[names.RETRY_LATER] == 3
    assert "retry-later budget spent" in dead.headers[names.ERROR]
    assert "still busy" in dead.headers[names.ERROR]


async def test_a_wait_longer_than_the_largest_tier_travels_in_hops(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Tiers up to 0.4 s, RetryLater(1.5): handled >= 1.5 s later, the handler ran twice
    only (the early copies went on waiting without running it)."""
    calls: list[float] = []
    done = asyncio.Event()

    class LongWait(Worker):
        queue = queue_name
        max_attempts = 1
        retry_base_delay = 0.1
        retry_max_delay = 0.4

        async def handle(self, msg: Poll, ctx: Context) -> None:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise RetryLater(after=1.5)
            done.set()

    worker = await worker_factory(LongWait)
    await bus.send(Poll(n=3))
    await asyncio.wait_for(done.wait(), 20)
    assert len(calls) == 2 and calls[1] - calls[0] >= 1.5
    await eventually(lambda: worker.stats.handled == 1)
    assert (worker.stats.retried, worker.stats.retry_laters) == (1, 1)  # hops not counted


async def test_deadline_wins_over_a_retry_later(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A RetryLater whose wait ends past the message's deadline dead-letters it as expired
    at once, instead of waiting to find it expired."""

    class TooLate(Worker):
        queue = queue_name

        async def handle(self, msg: Poll, ctx: Context) -> None:
            raise RetryLater(after=60)

    await worker_factory(TooLate)
    started = time.monotonic()
    await bus.send(Poll(n=4), deadline=datetime.now(UTC) + timedelta(seconds=10))
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1, timeout=20) == 1
    assert time.monotonic() - started < 60  # not after waiting the minute out
    [dead] = await broker_admin.drain(dlq)
    assert dead.headers[names.REASON] == "expired"
    assert "retry-later" in dead.headers[names.ERROR]
