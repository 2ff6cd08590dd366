"""Transient failures retry with backoff through delay queues; permanent ones dead-letter."""

from __future__ import annotations

import asyncio
import itertools
import time

from framework import Bus, Command, Context, PermanentError, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names


class Job(Command):
    type_name = "tests.retries.Job"
    job_id: str


async def test_transient_failure_then_success_on_attempt_3(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Fails twice, succeeds on attempt 3; each wait is at least the base delay."""
    attempts: list[tuple[int, float]] = []
    succeeded = asyncio.Event()

    class FlakyWorker(Worker):
        queue = queue_name
        retry_base_delay = 0.5
        retry_max_delay = 4.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            attempts.append((ctx.attempt, time.monotonic()))
            if ctx.attempt < 3:
                raise ConnectionError("dependency down")
            succeeded.set()

    worker = await worker_factory(FlakyWorker)
    await bus.send(Job(job_id="j1"))
    await asyncio.wait_for(succeeded.wait(), 20)
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.5
    assert gaps[1] >= 1.0  # doubled
    await eventually(lambda: worker.stats.handled == 1)  # counted once settled
    assert worker.stats.retried == 2
    assert worker.stats.handled == 1
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


async def test_max_attempts_exhausted_goes_to_dlq_with_attempts(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A message failing every time is dead-lettered after max_attempts, with the last error."""
    calls: list[int] = []

    class AlwaysFails(Worker):
        queue = queue_name
        max_attempts = 3
        retry_base_delay = 0.1
        retry_max_delay = 0.4

        async def handle(self, msg: Job, ctx: Context) -> None:
            calls.append(ctx.attempt)
            raise RuntimeError(f"boom {ctx.attempt}")

    await worker_factory(AlwaysFails)
    key = await bus.send(Job(job_id="j2"))
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1, timeout=20) == 1
    [dead] = await broker_admin.drain(dlq)
    assert calls == [1, 2, 3]
    assert dead.message_id == key
    assert dead.headers[names.REASON] == "exhausted"
    assert dead.headers[names.ATTEMPTS] == 3
    assert dead.headers[names.ERROR] == "RuntimeError: boom 3"


async def test_handler_timeout_is_retried(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A handler running past `timeout` is cancelled and the message retried."""
    attempts: list[int] = []
    cancelled = asyncio.Event()
    done = asyncio.Event()

    class SlowOnce(Worker):
        queue = queue_name
        timeout = 0.3
        retry_base_delay = 0.1
        retry_max_delay = 0.4

        async def handle(self, msg: Job, ctx: Context) -> None:
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            done.set()

    worker = await worker_factory(SlowOnce)
    await bus.send(Job(job_id="j3"))
    await asyncio.wait_for(done.wait(), 15)
    assert cancelled.is_set()
    assert attempts == [1, 2]
    assert worker.stats.retried == 1


async def test_permanent_error_goes_to_dlq_at_once(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """PermanentError is never retried: one attempt, then Q.dlq with reason permanent."""
    calls: list[int] = []

    class Refuses(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:
            calls.append(ctx.attempt)
            raise PermanentError("card declined")

    await worker_factory(Refuses)
    await bus.send(Job(job_id="j4"))
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1, timeout=10) == 1
    [dead] = await broker_admin.drain(dlq)
    assert calls == [1]
    assert dead.headers[names.REASON] == "permanent"
    assert dead.headers[names.ERROR] == "PermanentError: card declined"


async def test_healthy_messages_not_blocked_by_one_in_backoff(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """50 healthy messages are handled while one failing message waits out a 5 s backoff."""
    healthy_done: list[float] = []
    all_healthy = asyncio.Event()
    failing_attempts: list[float] = []

    class Mixed(Worker):
        queue = queue_name
        retry_base_delay = 5.0
        retry_max_delay = 10.0
        prefetch = 4

        async def handle(self, msg: Job, ctx: Context) -> None:
            if msg.job_id == "poison":
                failing_attempts.append(time.monotonic())
                raise RuntimeError("not yet")
            healthy_done.append(time.monotonic())
            if len(healthy_done) == 50:
                all_healthy.set()

    await worker_factory(Mixed)
    await bus.send(Job(job_id="poison"))
    start = time.monotonic()
    for i in range(50):
        await bus.send(Job(job_id=f"ok{i}"))
    await asyncio.wait_for(all_healthy.wait(), 4.5)
    assert failing_attempts and failing_attempts[0] < healthy_done[-1]
    assert healthy_done[-1] - start < 4.5
    assert len(failing_attempts) == 1  # still waiting in its delay queue
