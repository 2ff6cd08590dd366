"""Scheduled sends on the MemoryBus: held on the virtual clock, delivered when due."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from framework import Command, Context, Worker
from framework.publish.scheduling import InvalidSchedule
from framework.testing import MemoryBus
from framework.wire import names


class Remind(Command):
    type_name = "tests.memory.schedule.Remind"
    n: int


class Follow(Command):
    type_name = "tests.memory.schedule.Follow"
    n: int


def reminder_worker(handled: list[tuple[int, float]], bus: MemoryBus) -> type[Worker]:
    """Records each reminder with the virtual time it was handled at."""

    class Reminders(Worker):
        queue = "mem.reminders"

        async def handle(self, msg: Remind, ctx: Context) -> None:
            handled.append((msg.n, bus.now))

    return Reminders


async def test_a_delay_of_days_costs_no_real_time_and_keeps_due_order(
    test_bus: MemoryBus,
) -> None:
    """Three sends (2 days, 1 hour, now) are handled in due order at their virtual times."""
    handled: list[tuple[int, float]] = []
    await test_bus.start_worker(reminder_worker(handled, test_bus))
    await test_bus.send(Remind(n=1), delay=2 * 24 * 3600)
    await test_bus.send(Remind(n=2), delay=3600)
    await test_bus.send(Remind(n=3))
    await asyncio.wait_for(test_bus.drain(), 2)
    assert [n for n, _ in handled] == [3, 2, 1]
    assert handled[1][1] == pytest.approx(3600)
    assert handled[2][1] == pytest.approx(2 * 24 * 3600)


async def test_delay_rounds_up_to_the_granularity(test_bus: MemoryBus) -> None:
    """0.25 s is due after 0.3 s, as the broker's 100 ms countdown would deliver it."""
    handled: list[tuple[int, float]] = []
    await test_bus.start_worker(reminder_worker(handled, test_bus))
    await test_bus.send(Remind(n=1), delay=0.25)
    await asyncio.wait_for(test_bus.drain(), 2)
    [(n, at)] = handled
    assert n == 1 and at == pytest.approx(0.3)


async def test_held_command_carries_not_before_and_is_not_in_the_queue_yet(
    test_bus: MemoryBus,
) -> None:
    """Before it is due nothing is in the worker's queue; the held copy says fw-not-before."""
    handled: list[tuple[int, float]] = []
    await test_bus.start_worker(reminder_worker(handled, test_bus))
    due = datetime.now(UTC) + timedelta(minutes=10)
    await test_bus.send(Remind(n=1), not_before=due)
    assert test_bus.messages("mem.reminders") == []
    [held] = test_bus.broker.held.messages()
    assert held.headers[names.NOT_BEFORE] / 1000 == pytest.approx(due.timestamp(), abs=0.2)
    await asyncio.wait_for(test_bus.drain(), 2)
    assert [n for n, _ in handled] == [1]


async def test_handler_schedules_a_follow_up_with_a_derived_key(test_bus: MemoryBus) -> None:
    """ctx.send(delay=...) holds the follow-up like bus.send; its key derives from the
    incoming one (a retried handler would schedule the same key again)."""
    followed: list[tuple[int, float]] = []

    class Chain(Worker):
        queue = "mem.chain"

        async def handle(self, msg: Remind | Follow, ctx: Context) -> None:
            if isinstance(msg, Remind):
                await ctx.send(Follow(n=msg.n), delay=60)
            else:
                followed.append((msg.n, test_bus.now))

    await test_bus.start_worker(Chain)
    await test_bus.send(Remind(n=7), idempotency_key="remind-7")
    await asyncio.wait_for(test_bus.drain(), 2)
    [(n, at)] = followed
    assert n == 7 and at == pytest.approx(60)
    [follow] = [p for p in test_bus.published if isinstance(p.message, Follow)]
    assert follow.key != "remind-7" and follow.causation_id == "remind-7"


async def test_bad_schedule_is_refused_on_the_memory_bus_too(test_bus: MemoryBus) -> None:
    """The same validation as Bus.send: nothing is held."""
    with pytest.raises(InvalidSchedule, match="negative"):
        await test_bus.send(Remind(n=1), delay=-5)
    assert len(test_bus.broker.held) == 0


async def test_released_command_is_due_on_the_real_clock_too(test_bus: MemoryBus) -> None:
    """Released on the virtual clock, its fw-not-before is not in the real future, so a
    worker comparing it with the real clock sees it due."""
    seen: list[float] = []

    class Reader(Worker):
        queue = "mem.reader"

        async def handle(self, msg: Remind, ctx: Context) -> None:
            seen.append(int(ctx.headers[names.NOT_BEFORE]) / 1000)

    await test_bus.start_worker(Reader)
    await test_bus.send(Remind(n=1), delay=3600)
    await asyncio.wait_for(test_bus.drain(), 2)
    [not_before] = seen
    assert not_before <= time.time()
