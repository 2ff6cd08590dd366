"""Deadlines on a real broker: work whose caller gave up is never handled, nor lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from framework import Bus, Command, Context, Settings, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names

SKEW = 0.1  # clock-skew tolerance of these tests' bus: producer and worker share a clock


class Quote(Command):
    type_name = "tests.deadlines.Quote"
    n: int


@pytest.fixture
async def strict_bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A Bus whose workers tolerate only 0.1 s of clock skew, so deadlines bite quickly."""
    settings = Settings(clock_skew_tolerance=SKEW)
    async with Bus.connect(amqp_url, settings=settings, service="tests") as bus:
        yield bus


def quote_worker(queue_name: str, handled: list[int]) -> type[Worker]:
    """A worker that records each quote it handles."""

    class QuoteWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Quote, ctx: Context) -> None:
            handled.append(msg.n)

    return QuoteWorker


async def test_expired_in_queue_is_dead_lettered_by_broker(
    strict_bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A command whose ttl runs out while no worker consumes is dead-lettered by the broker
    (x-death reason `expired`, from the AMQP expiration) and never handled."""
    handled: list[int] = []
    worker_cls = quote_worker(queue_name, handled)
    await strict_bus.declare(worker_cls)
    await strict_bus.send(Quote(n=1), ttl=0.2)
    assert await broker_admin.wait_for_depth(names.dlq_name(queue_name), 1, timeout=10) == 1
    worker = await worker_factory(worker_cls, strict_bus)
    [dead] = await broker_admin.drain(names.dlq_name(queue_name))
    assert dead.headers[names.X_DEATH][0]["reason"] == "expired"
    assert await broker_admin.depth(queue_name) == 0
    assert handled == []
    assert worker.stats.expired == 0


async def test_expired_on_delivery_is_dead_lettered_by_worker(
    strict_bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A command delivered past its fw-deadline (the broker did not drop it) is not handled;
    the worker dead-letters it with fw-reason `expired` and counts it."""
    handled: list[int] = []
    worker = await worker_factory(quote_worker(queue_name, handled), strict_bus)
    past_ms = int(time.time() * 1000) - 5_000
    await broker_admin.publish_raw(
        Quote.type_name,
        b'{"n": 2}',
        exchange=names.COMMANDS_EXCHANGE,
        type=Quote.type_name,
        content_type=names.CONTENT_TYPE,
        headers={names.DEADLINE: past_ms},
    )
    assert await broker_admin.wait_for_depth(names.dlq_name(queue_name), 1, timeout=10) == 1
    [dead] = await broker_admin.drain(names.dlq_name(queue_name))
    assert dead.headers[names.REASON] == "expired"
    assert dead.headers[names.DEADLINE] == past_ms
    assert handled == []
    assert worker.stats.expired == 1


async def test_future_deadline_is_handled(
    strict_bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A command with a deadline in the future is handled normally."""
    handled: list[int] = []
    worker = await worker_factory(quote_worker(queue_name, handled), strict_bus)
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    await strict_bus.send(Quote(n=3), deadline=deadline)
    await eventually(lambda: worker.stats.handled == 1)
    assert handled == [3]
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


async def test_handler_slower_than_deadline_is_cancelled_as_expired(
    strict_bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A handler still running at the message deadline is cancelled (its 30 s timeout does
    not extend the deadline) and the message is dead-lettered as `expired`."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class SlowQuoteWorker(Worker):
        queue = queue_name
        timeout = 30.0

        async def handle(self, msg: Quote, ctx: Context) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    worker = await worker_factory(SlowQuoteWorker, strict_bus)
    sent_at = time.monotonic()
    await strict_bus.send(Quote(n=4), ttl=1.0)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(cancelled.wait(), 5)
    assert time.monotonic() - sent_at < 1.0 + SKEW + 1.0  # the deadline, not the timeout
    assert await broker_admin.wait_for_depth(names.dlq_name(queue_name), 1, timeout=10) == 1
    [dead] = await broker_admin.drain(names.dlq_name(queue_name))
    assert dead.headers[names.REASON] == "expired"
    assert "deadline passed while handling" in dead.headers[names.ERROR]
    await eventually(lambda: worker.stats.expired == 1)
    assert worker.stats.retried == 0
