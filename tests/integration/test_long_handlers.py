"""Long-running handlers: a handler running several lease lengths, on two replicas sharing a
store, under a short consumer timeout, takes effect once and keeps its channel; a worker
whose `timeout` the broker's consumer timeout would cut short refuses to start.

Runs on a vhost of its own (`own_vhost`): the per-queue consumer timeout is a policy matching
only this test's queue there, gone with the vhost. Per-queue consumer timeouts exist from
RabbitMQ 3.12: on 3.10 the policy parts are skipped, and the refusal is shown against the
global one (`FRAMEWORK_BROKER_CONSUMER_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aio_pika.exceptions import ChannelNotFoundEntity
from structlog.testing import capture_logs

from framework import Bus, Command, ConfigurationError, Context, Worker
from framework.settings import Settings
from framework.testing import eventually
from tests.integration.test_check_broker import management, own_vhost, policy_shown, put_policy

StoreUrl = Callable[[str], str]

MANAGEMENT_URL = os.environ.get("FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
LEASE = 1.0
STEPS, STEP = 6, 0.5  # the handler runs 3 s: three lease lengths
TIMEOUT = 3.5  # the handler's SLA: above its run time
CONSUMER_TIMEOUT_MS = 4000  # the queue's consumer timeout (policy): above the SLA


class Crunch(Command):
    type_name = "tests.long.Crunch"
    n: int


class Effects:
    """What the handlers did, per key, and how long each run took (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: Counter[int] = Counter()
        self.durations: list[float] = []

    def record(self, n: int, duration: float) -> None:
        with self._lock:
            self.done[n] += 1
            self.durations.append(duration)


async def per_queue_consumer_timeouts() -> bool:
    """Whether the broker knows per-queue consumer timeouts (RabbitMQ 3.12 and later)."""
    overview = await asyncio.to_thread(management, "GET", "/api/overview")
    major, minor = (int(part) for part in str(overview["rabbitmq_version"]).split(".")[:2])
    return (major, minor) >= (3, 12)


def long_worker(queue_name: str, effects: Effects) -> type[Worker]:
    class LongWorker(Worker):
        queue = queue_name
        prefetch = 1
        timeout = TIMEOUT
        idempotency_lease = LEASE
        retry_base_delay = 0.05
        retry_max_delay = 0.4

        async def handle(self, msg: Crunch, ctx: Context) -> None:
            started = time.monotonic()
            for step in range(STEPS):
                await asyncio.sleep(STEP)
                await ctx.heartbeat((step + 1) / STEPS)
            effects.record(msg.n, time.monotonic() - started)

    return LongWorker


@asynccontextmanager
async def replicas(
    url: str, store: str, worker_cls: type[Worker], count: int
) -> AsyncIterator[list[Worker]]:
    """`count` workers of `worker_cls`, each on a Bus of its own sharing `store`, running
    (with the management API configured, so each checks its queue at start)."""
    settings = Settings(management_url=MANAGEMENT_URL)
    async with AsyncExitStack() as stack:
        workers: list[Worker] = []
        tasks: list[asyncio.Task[None]] = []
        for i in range(count):
            bus = await stack.enter_async_context(
                Bus.connect(url, settings=settings, service=f"tests.r{i}", idempotency=store)
            )
            worker = worker_cls(bus)
            tasks.append(asyncio.create_task(worker.run()))
            workers.append(worker)
        try:
            for worker in workers:
                await asyncio.wait_for(worker.wait_ready(), 30)
            yield workers
        finally:
            for worker in workers:
                await worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(150)  # polls the management API for the policy for up to 60 s
@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
async def test_a_handler_running_several_leases_takes_effect_once_and_keeps_its_channel(
    amqp_url: str, store_kind: str, store_url: StoreUrl, queue_name: str
) -> None:
    """Two replicas share a store; each key is sent twice. The copy that claims a key runs
    three lease lengths, reporting progress; the other copy finds the key busy the whole
    time (the lease is renewed), then done. On a broker with per-queue consumer timeouts the
    queue has one of 4 s (above the 3.5 s timeout, so the workers start). One effect per
    key, no channel closed, no settlement lost."""
    effects = Effects()
    worker_cls = long_worker(queue_name, effects)
    async with own_vhost(amqp_url) as (path, url):
        if await per_queue_consumer_timeouts():
            async with Bus.connect(url, service="tests.declare") as bus:
                await bus.declare(worker_cls)
            await put_policy(path, "short", queue_name, {"consumer-timeout": CONSUMER_TIMEOUT_MS})
            await policy_shown(path, queue_name, "short")
        with capture_logs() as logs:
            async with replicas(url, store_url(store_kind), worker_cls, 2) as workers:
                sender = workers[0].bus
                for n in range(2):
                    for _ in range(2):  # the same key twice, as a producer retry would send it
                        await sender.send(Crunch(n=n), idempotency_key=f"{queue_name}-{n}")
                await eventually(
                    lambda: sum(w.stats.handled + w.stats.duplicates for w in workers) == 4,
                    timeout=60,
                )
                assert all(w.receiving for w in workers)
                stats = [w.stats for w in workers]
                progress = sum(w.progress.heartbeats for w in workers)
    assert effects.done == {0: 1, 1: 1}
    assert min(effects.durations) >= 3 * LEASE
    assert sum(s.handled for s in stats) == 2 and sum(s.duplicates for s in stats) == 2
    assert sum(s.settle_failures + s.dead_lettered + s.timeouts for s in stats) == 0
    # at least the copy delivered beside the first run found its key busy and was deferred
    # (the other may arrive after its key is done: then it is a duplicate straight away)
    assert sum(s.retried for s in stats) >= 1
    assert progress == 2 * STEPS
    events = {e["event"] for e in logs}
    assert not events & {"worker.resubscribing", "idempotency.lease_lost", "idempotency.fenced"}


@pytest.mark.timeout(150)
async def test_a_worker_whose_timeout_the_consumer_timeout_would_cut_refuses_to_start(
    amqp_url: str, queue_name: str
) -> None:
    """The queue's consumer timeout (a policy of 3 s) is below the worker's 3.5 s timeout: the
    broker would close the channel of a slow handler and its message would run twice, so
    the worker refuses to start and says which policy and which timeout."""
    if not await per_queue_consumer_timeouts():
        pytest.skip("per-queue consumer timeouts need RabbitMQ 3.12+ (3.10: global only)")
    worker_cls = long_worker(queue_name, Effects())
    async with own_vhost(amqp_url) as (path, url):
        async with Bus.connect(url, service="tests.declare") as bus:
            await bus.declare(worker_cls)
        await put_policy(path, "too-short", queue_name, {"consumer-timeout": 3000})
        await policy_shown(path, queue_name, "too-short")
        settings = Settings(management_url=MANAGEMENT_URL)
        async with Bus.connect(url, settings=settings, service="tests.refused") as bus:
            worker = worker_cls(bus)
            with pytest.raises(ConfigurationError) as raised:
                await asyncio.wait_for(worker.run(), 30)
            with pytest.raises(ConfigurationError):  # what wait_ready() tells whoever waits
                await worker.wait_ready()
    text = str(raised.value)
    assert "[consumer-timeout] policy too-short closes the channel of a delivery unacked " in text
    assert f"for 3s on {queue_name}, but LongWorker.timeout is 3.5s" in text


async def test_a_worker_whose_timeout_the_global_consumer_timeout_would_cut_refuses_to_start(
    amqp_url: str, queue_name: str
) -> None:
    """Every broker version: the broker's global consumer_timeout, stated as
    FRAMEWORK_BROKER_CONSUMER_TIMEOUT (no client can read it), below the worker's timeout
    refuses the start before anything is declared."""
    settings = Settings(broker_consumer_timeout=3.0)
    worker_cls = long_worker(queue_name, Effects())
    async with Bus.connect(amqp_url, settings=settings, service="tests.refused") as bus:
        worker = worker_cls(bus)
        with pytest.raises(ConfigurationError, match=r"LongWorker\.timeout is 3\.5s but"):
            await asyncio.wait_for(worker.run(), 30)
        with pytest.raises(ConfigurationError):  # what wait_ready() tells whoever waits
            await worker.wait_ready()
        with pytest.raises(ChannelNotFoundEntity):
            await bus.consumer_count(queue_name)


@pytest.mark.timeout(240)  # the broker checks consumer timeouts once per channel tick (60 s)
async def test_a_consumer_timeout_that_fires_anyway_restarts_the_work(
    amqp_url: str, store_url: StoreUrl, queue_name: str
) -> None:
    """Why the start-up check matters. Without the management API a worker cannot see a
    per-queue consumer timeout (1 s here) below its timeout: at its next channel tick the
    broker closes the channel of the running handler, which cancels it (its claim is
    released) and delivers the message again, so the other replica starts the work over.
    The effect still happens once, but all the work done so far is lost."""
    if not await per_queue_consumer_timeouts():
        pytest.skip("per-queue consumer timeouts need RabbitMQ 3.12+ (3.10: global only)")
    effects = Effects()
    starts: list[float] = []

    class Unchecked(Worker):
        queue = queue_name
        prefetch = 1
        timeout = 150.0
        idempotency_lease = 2.0

        async def handle(self, msg: Crunch, ctx: Context) -> None:
            starts.append(time.monotonic())
            while len(starts) == 1:  # the first run goes on until something stops it
                await asyncio.sleep(0.5)
                await ctx.heartbeat()
            effects.record(msg.n, time.monotonic() - starts[-1])

    async with own_vhost(amqp_url) as (path, url):
        async with Bus.connect(url, service="tests.declare") as bus:
            await bus.declare(Unchecked)
        await put_policy(path, "cut", queue_name, {"consumer-timeout": 1000})
        await policy_shown(path, queue_name, "cut")
        unchecked = Settings(management_url=None)  # as a worker without the setting
        async with AsyncExitStack() as stack:
            workers: list[Worker] = []
            for i in range(2):
                bus = await stack.enter_async_context(
                    Bus.connect(
                        url,
                        settings=unchecked,
                        service=f"tests.r{i}",
                        idempotency=store_url("redis"),
                    )
                )
                worker = Unchecked(bus)
                task = asyncio.create_task(worker.run())
                stack.push_async_callback(asyncio.wait_for, task, 30)
                stack.push_async_callback(worker.stop)
                await worker.wait_ready()
                workers.append(worker)
            with capture_logs() as logs:
                await workers[0].bus.send(Crunch(n=7))
                await eventually(lambda: sum(w.stats.handled for w in workers) == 1, timeout=150)
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.0
    assert effects.done == {7: 1}
    assert "worker.resubscribing" in {e["event"] for e in logs}
