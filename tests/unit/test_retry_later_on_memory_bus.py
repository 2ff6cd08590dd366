"""RetryLater on the in-memory bus (virtual clock): waits at least `after`, burns no
attempt, and dead-letters past its budget."""

from __future__ import annotations

import asyncio
import itertools

from framework import Command, Context, RetryLater, Worker
from framework.testing import MemoryBus
from framework.wire import names


class Fetch(Command):
    type_name = "tests.retry_later.Fetch"
    n: int


async def test_retry_later_waits_at_least_after_without_burning_attempts(
    test_bus: MemoryBus,
) -> None:
    """Three RetryLater(40 s) then success: same attempt each time, each >= 40 s later."""
    seen: list[tuple[int, float]] = []

    class NotReady(Worker):
        queue = "mem.not_ready"
        max_attempts = 2
        retry_base_delay = 1.0
        retry_max_delay = 64.0

        async def handle(self, msg: Fetch, ctx: Context) -> None:
            seen.append((ctx.attempt, test_bus.now))
            if len(seen) <= 3:
                raise RetryLater(after=40, reason="not ready yet")

    worker = await test_bus.start_worker(NotReady)
    await test_bus.send(Fetch(n=1))
    await asyncio.wait_for(test_bus.drain(), 5)
    assert [attempt for attempt, _ in seen] == [1, 1, 1, 1]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(seen)]
    assert all(gap >= 40 for gap in gaps), gaps
    assert test_bus.dead_letters("mem.not_ready") == []
    assert (worker.stats.handled, worker.stats.retry_laters) == (1, 3)


async def test_retry_later_past_its_budget_is_dead_lettered_as_exhausted(
    test_bus: MemoryBus,
) -> None:
    """retry_later_limit=2: the third RetryLater dead-letters, saying the budget is spent."""
    calls: list[int] = []

    class NeverReady(Worker):
        queue = "mem.never_ready"
        retry_later_limit = 2

        async def handle(self, msg: Fetch, ctx: Context) -> None:
            calls.append(ctx.attempt)
            raise RetryLater(after=5, reason="still not ready")

    await test_bus.start_worker(NeverReady)
    await test_bus.send(Fetch(n=2))
    await asyncio.wait_for(test_bus.drain(), 5)
    assert calls == [1, 1, 1]
    [dead] = test_bus.dead_letters("mem.never_ready")
    assert dead.reason == "exhausted" and dead.attempts == 1
    assert dead.error is not None and "retry-later budget spent" in dead.error
    assert dead.headers[names.RETRY_LATER] == 2


async def test_failures_and_retry_laters_have_separate_budgets(test_bus: MemoryBus) -> None:
    """A failing attempt still burns an attempt; RetryLaters in between do not."""
    calls: list[int] = []

    class Mixed(Worker):
        queue = "mem.mixed"
        max_attempts = 2
        retry_base_delay = 1.0
        retry_max_delay = 8.0

        async def handle(self, msg: Fetch, ctx: Context) -> None:
            calls.append(ctx.attempt)
            if len(calls) in (1, 3):
                raise RetryLater(after=2)
            if len(calls) == 2:
                raise RuntimeError("transient")

    worker = await test_bus.start_worker(Mixed)
    await test_bus.send(Fetch(n=3))
    await asyncio.wait_for(test_bus.drain(), 5)
    assert calls == [1, 1, 2, 2]
    assert worker.stats.handled == 1 and test_bus.dead_letters("mem.mixed") == []
