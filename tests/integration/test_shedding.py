"""Shedding by forecast on a real broker: a worker too slow for its offered load publishes
its rate and backlog on fw.load; a bus with shedding on refuses commands predicted to
expire (Overloaded with retry_after) instead of enqueueing them, so far fewer expire in the
queue than with the same load and shedding off. Nothing accepted is lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from framework import Bus, Command, Context, Overloaded, Settings, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names
from tests.integration.test_reconnect import _close_connections_named

pytestmark = pytest.mark.timeout(90)

HANDLING = 0.05  # seconds per message, one at a time: about 20 messages per second
OFFERED = 60.0  # messages per second sent: three times what the worker handles
SENDS = 180  # three seconds of offered load
TTL = 1.0  # each command must start within a second of its send
SHEDDING = Settings(shed_by_forecast=True, load_report_interval=0.3, clock_skew_tolerance=0.1)
_RUN = uuid.uuid4().hex[:8]  # command types of this session only (each run its own queue)


class JobShedOff(Command):
    type_name = f"tests.shedding.JobShedOff.{_RUN}"
    n: int


class JobShedOn(Command):
    type_name = f"tests.shedding.JobShedOn.{_RUN}"
    n: int


class JobNoDeadline(Command):
    type_name = f"tests.shedding.JobNoDeadline.{_RUN}"
    n: int


def slow_worker(queue_name: str, job: type[Command], handled: list[int]) -> type[Worker]:
    """One handler at a time, HANDLING seconds each, for commands of type `job`."""

    class SlowWorker(Worker):
        queue = queue_name
        prefetch = 1

        async def handle(self, msg: Command, ctx: Context) -> None:
            await asyncio.sleep(HANDLING)
            handled.append(msg.n)  # type: ignore[attr-defined]

    SlowWorker.handle.__annotations__["msg"] = job  # the type it consumes
    return SlowWorker


@pytest.fixture
async def shedding_bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A Bus with shedding by forecast on: its workers report, its sends may be refused."""
    async with Bus.connect(amqp_url, settings=SHEDDING, service="tests") as bus:
        yield bus


@dataclass
class Run:
    """What one run of offered load did: sends accepted and refused, and the DLQ."""

    accepted: int = 0
    refused: list[float] = field(default_factory=list)  # each refusal's retry_after
    first_refusal: int | None = None  # index of the first refused send
    handled: list[int] = field(default_factory=list)
    expired: int = 0


async def offer_load(
    sender: Bus,
    worker_bus: Bus,
    broker_admin: BrokerAdmin,
    worker_factory: WorkerFactory,
    queue: str,
    job: type[Command],
) -> Run:
    """Start a slow worker on `queue` (on `worker_bus`, which reports its load), send it
    SENDS commands with ttl=TTL at OFFERED per second through `sender`, wait until the
    queue is drained, then count what the DLQ says expired."""
    run = Run()
    worker = await worker_factory(slow_worker(queue, job, run.handled), worker_bus)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(SENDS):
        await asyncio.sleep(max(0.0, started + n / OFFERED - loop.time()))  # pacing
        try:
            await sender.send(job(n=n), ttl=TTL)
        except Overloaded as refused:
            run.refused.append(-1.0 if refused.retry_after is None else refused.retry_after)
            if run.first_refusal is None:
                run.first_refusal = n
        else:
            run.accepted += 1
    await broker_admin.wait_drained(worker, timeout=40)
    dead = await broker_admin.drain(names.dlq_name(queue))
    run.expired = sum(1 for d in dead if _reason(d.headers) == "expired")
    assert run.expired == len(dead), "only expiry dead-letters here"
    return run


def _reason(headers: dict[str, object]) -> object:
    """`fw-reason` (the worker dead-lettered it) or the broker's x-death reason."""
    if names.REASON in headers:
        return headers[names.REASON]
    deaths = headers.get(names.X_DEATH)
    return deaths[0]["reason"] if isinstance(deaths, list) and deaths else None


async def test_shedding_refuses_early_and_far_fewer_commands_expire(
    bus: Bus,
    shedding_bus: Bus,
    broker_admin: BrokerAdmin,
    worker_factory: WorkerFactory,
    queue_name: str,
) -> None:
    """Same slow worker, same load: with shedding on, senders get Overloaded (with a
    positive retry_after) from early in the run, and at most half as many commands expire
    in the queue as with shedding off; every accepted command is handled or expired."""
    off = await offer_load(
        bus, shedding_bus, broker_admin, worker_factory, f"{queue_name}.off", JobShedOff
    )
    on = await offer_load(
        shedding_bus, shedding_bus, broker_admin, worker_factory, f"{queue_name}.on", JobShedOn
    )

    assert off.refused == []
    assert off.expired > SENDS / 4, f"the load must overwhelm the worker: {off}"
    assert on.refused, "shedding on: some sends are refused"
    assert all(after > 0 for after in on.refused), "each refusal says when to retry"
    assert on.first_refusal is not None and on.first_refusal < SENDS / 2
    assert on.expired <= off.expired / 2, f"expired: on={on.expired}, off={off.expired}"
    for run in (off, on):  # nothing lost: each accepted command handled once or expired
        assert len(run.handled) == len(set(run.handled))
        assert len(run.handled) + run.expired == run.accepted


async def test_sends_without_deadline_are_never_shed(
    shedding_bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A backlog that a deadline would not survive: commands without one are all sent."""
    handled: list[int] = []
    worker = await worker_factory(slow_worker(queue_name, JobNoDeadline, handled), shedding_bus)
    for n in range(60):
        await shedding_bus.send(JobNoDeadline(n=n))
    await broker_admin.wait_drained(worker, timeout=30)
    assert sorted(handled) == list(range(60))


async def test_reports_resume_after_the_connections_are_lost(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Both connections closed by the broker: the worker reports again and the bus's
    exclusive follower queue comes back with its binding (reports arrive again)."""
    service = f"shedding-{uuid.uuid4().hex[:8]}"
    handled: list[int] = []
    async with Bus.connect(amqp_url, service=service, settings=SHEDDING) as bus:
        follower = bus.load
        assert follower is not None
        worker = slow_worker(queue_name, JobNoDeadline, handled)(bus)
        run = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await eventually(lambda: follower.received >= 2, timeout=10)
            reconnected = asyncio.Semaphore(0)

            async def on_reconnect() -> None:
                reconnected.release()

            bus.add_reconnect_listener(on_reconnect)
            assert await _close_connections_named(service, 2) == 2
            async with asyncio.timeout(30):
                for _ in range(2):  # the publishing and the consuming connection
                    await reconnected.acquire()
            before = follower.received
            await eventually(lambda: follower.received >= before + 3, timeout=15)
            await bus.send(JobNoDeadline(n=1), ttl=30.0)
            predicted = follower.board.predicted_wait(JobNoDeadline.type_name, time.monotonic())
            assert predicted is not None and predicted < 1.0  # an empty queue: its handling
        finally:
            await worker.stop()
            await run
            await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())
