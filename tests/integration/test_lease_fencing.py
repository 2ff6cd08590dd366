"""Handlers that outlive their timeout or block their event loop, two workers on a shared
store: each key's effect happens once.

Effects are counted where the handler's own work happens (in its thread), per key.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from framework import Bus, Command, Context, Worker
from framework.testing import eventually
from tests.integration.loop_thread import LoopThread

StoreUrl = Callable[[str], str]

SHARED = ["sqlite", "redis", "postgres"]


class Work(Command):
    type_name = "tests.leases.Work"
    n: int


class Effects:
    """What the handlers' threads did, per key (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: Counter[int] = Counter()

    def record(self, n: int) -> None:
        with self._lock:
            self.done[n] += 1


def settled(*workers: Worker) -> int:
    return sum(w.stats.handled + w.stats.duplicates + w.stats.dead_lettered for w in workers)


@pytest.mark.parametrize("store_kind", SHARED)
async def test_thread_past_timeout_takes_effect_once(
    bus_pair: tuple[Bus, Bus], worker_factory: Any, queue_name: str
) -> None:
    """A handler whose `asyncio.to_thread` work outlives its timeout (and its lease) runs that
    work once per key: the key stays leased until the thread ends, then is marked done and
    the message dead-lettered as permanent instead of being run again."""
    effects = Effects()

    def slow_effect(n: int) -> None:
        time.sleep(1.6)  # past timeout (0.3 s) and past the lease (1 s): renewed meanwhile
        effects.record(n)

    class ThreadWorker(Worker):
        queue = queue_name
        timeout = 0.3
        idempotency_lease = 1.0
        max_attempts = 3
        retry_base_delay = 0.05
        retry_max_delay = 0.4

        async def handle(self, msg: Work, ctx: Context) -> None:
            await asyncio.to_thread(slow_effect, msg.n)

    first, second = bus_pair
    workers = [
        await worker_factory(ThreadWorker, first),
        await worker_factory(ThreadWorker, second),
    ]
    for n in range(3):
        await first.send(Work(n=n))
    await eventually(lambda: settled(*workers) == 3, timeout=30)
    assert effects.done == {0: 1, 1: 1, 2: 1}
    assert sum(w.stats.dead_lettered for w in workers) == 3


@pytest.mark.timeout(60)  # ~6 s alone; more under load
@pytest.mark.parametrize("store_kind", SHARED)
async def test_blocked_loop_past_lease_takes_effect_once(
    amqp_url: str,
    store_kind: str,
    store_url: StoreUrl,
    bus: Bus,
    broker_admin: Any,
    queue_name: str,
) -> None:
    """Two replicas get copies of the same keys; the one that claims a key blocks its event
    loop past the lease. Its lease is renewed from the renewal thread meanwhile, so the other
    replica finds the key busy, then done: one effect per key."""
    effects = Effects()

    class BlockingWorker(Worker):
        queue = queue_name
        prefetch = 1
        timeout = 0.5
        idempotency_lease = 1.0
        retry_base_delay = 0.05
        retry_max_delay = 0.4

        async def handle(self, msg: Work, ctx: Context) -> None:
            time.sleep(2.5)  # noqa: ASYNC251 - the point: this blocks the replica's loop
            effects.record(msg.n)

    await bus.declare(BlockingWorker)
    replicas = [
        LoopThread(amqp_url, BlockingWorker, f"tests.r{i}", store_url(store_kind)) for i in (1, 2)
    ]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            await asyncio.to_thread(replica.ready.wait, 30)
            assert replica.error is None, replica.error
        for n in range(3):
            for _ in range(2):  # the same key twice, as a producer retry would send it
                await bus.send(Work(n=n), idempotency_key=f"{queue_name}-{n}")
        workers = [r.worker for r in replicas if r.worker is not None]
        await eventually(lambda: settled(*workers) == 6, timeout=60)
        assert effects.done == {0: 1, 1: 1, 2: 1}
        assert sum(w.stats.handled for w in workers) == 3
    finally:
        for replica in replicas:
            await replica.stop()
        spec = replicas[0].worker.spec if replicas[0].worker is not None else None
        if spec is not None:
            await broker_admin.delete_worker_queues(spec.queue, spec.policy.tiers_ms())


async def test_memory_store_with_two_consumers_warns(
    amqp_url: str, worker_factory: Any, queue_name: str
) -> None:
    """Two replicas with `memory://` stores consuming one queue: the second one warns at start
    that its keys are not shared, and says what to set."""

    class PlainWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Work, ctx: Context) -> None:
            return None

    async with (
        Bus.connect(amqp_url, service="tests.a") as one,
        Bus.connect(amqp_url, service="tests.b") as two,
    ):
        with capture_logs() as quiet:
            await worker_factory(PlainWorker, one)
        with capture_logs() as logs:
            await worker_factory(PlainWorker, two)
    assert not [e for e in quiet if e["event"] == "idempotency.store_not_shared"]
    warnings = [e for e in logs if e["event"] == "idempotency.store_not_shared"]
    assert len(warnings) == 1
    assert warnings[0]["consumers"] == 2
    assert "FRAMEWORK_IDEMPOTENCY_URL" in warnings[0]["hint"]
