"""Idempotency end to end on a real broker: each key takes effect once per queue."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from framework import Bus, Command, Context, Event, Worker
from framework.idempotency import ClaimResult, IdempotencyStore
from framework.testing import eventually
from framework.testing.pytest_plugin import WorkerFactory


class Charge(Command):
    type_name = "tests.idempotency.Charge"
    n: int


class Bill(Command):
    type_name = "tests.idempotency.Bill"
    n: int


class Billed(Event):
    type_name = "tests.idempotency.Billed"
    n: int


class Reserve(Command):
    type_name = "tests.idempotency.Reserve"
    n: int


class Work(Command):
    type_name = "tests.idempotency.Work"
    n: int


class FastRetries(Worker):
    """Base for test workers: retries (and busy re-checks) come back within ~100 ms."""

    queue = "unused"
    retry_base_delay = 0.05
    retry_max_delay = 0.4


async def test_same_key_sent_five_times_is_handled_once(
    store_bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """One key sent five times runs the handler once; the other four count as duplicates."""
    effects: Counter[int] = Counter()

    class ChargeWorker(FastRetries):
        queue = queue_name

        async def handle(self, msg: Charge, ctx: Context) -> None:
            effects[msg.n] += 1

    worker = await worker_factory(ChargeWorker, store_bus)
    key = f"charge-{uuid.uuid4()}"
    for _ in range(5):
        assert await store_bus.send(Charge(n=7), idempotency_key=key) == key
    await eventually(lambda: worker.stats.handled + worker.stats.duplicates == 5)
    assert effects == {7: 1}
    assert (worker.stats.handled, worker.stats.duplicates) == (1, 4)


async def test_two_replicas_handle_each_key_once(
    bus_pair: tuple[Bus, Bus], worker_factory: WorkerFactory, queue_name: str
) -> None:
    """Two workers on two Buses sharing a store, 200 keys each sent twice: 200 effects."""
    effects: Counter[int] = Counter()

    class BillWorker(FastRetries):
        queue = queue_name
        prefetch = 16

        async def handle(self, msg: Bill, ctx: Context) -> None:
            effects[msg.n] += 1
            await asyncio.sleep(0)  # let the other replica interleave

    first, second = bus_pair
    workers = [await worker_factory(BillWorker, first), await worker_factory(BillWorker, second)]
    run = uuid.uuid4().hex
    await asyncio.gather(
        *(
            bus.send(Bill(n=n), idempotency_key=f"bill-{run}-{n}")
            for n in range(200)
            for bus in (first, second)
        )
    )

    def settled() -> int:
        return sum(w.stats.handled + w.stats.duplicates for w in workers)

    await eventually(lambda: settled() == 400, timeout=60)
    assert len(effects) == 200
    assert set(effects.values()) == {1}
    assert sum(w.stats.handled for w in workers) == 200


async def test_retried_handler_republishes_same_keys(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A handler that publishes then fails once re-publishes the same derived key; the
    downstream worker handles that event once."""
    published: list[str] = []
    downstream: Counter[int] = Counter()

    class BillingWorker(FastRetries):
        queue = queue_name

        async def handle(self, msg: Bill, ctx: Context) -> None:
            published.append(await ctx.publish(Billed(n=msg.n)))
            if ctx.attempt == 1:
                raise RuntimeError("payment gateway hiccup")

    class AuditWorker(FastRetries):
        queue = f"{queue_name}.audit"

        async def handle(self, msg: Billed, ctx: Context) -> None:
            downstream[msg.n] += 1

    audit = await worker_factory(AuditWorker)
    billing = await worker_factory(BillingWorker)
    key = await bus.send(Bill(n=3))
    await eventually(lambda: billing.stats.handled == 1)
    await eventually(lambda: audit.stats.handled + audit.stats.duplicates == 2)
    assert len(published) == 2
    assert published[0] == published[1] != key
    assert downstream == {3: 1}
    assert (audit.stats.handled, audit.stats.duplicates) == (1, 1)
    assert billing.stats.retried == 1


class DeadHolder:
    """The store as seen by a worker process that dies holding its claim.

    Its claims take a short lease (the worker's own lease is timeout + 30 s) and it never
    releases, as a SIGKILLed process would not.
    """

    def __init__(self, store: IdempotencyStore, lease: float) -> None:
        self._store = store
        self._lease = lease

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        return await self._store.claim(scope, key, self._lease, token)

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        """A killed process renews nothing (its lease runs out)."""
        return True

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        return await self._store.complete(scope, key, retention, token)

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        """A killed process releases nothing."""

    async def close(self) -> None:
        """The underlying store belongs to the other bus."""


@pytest.mark.parametrize("store_kind", ["sqlite", "redis", "postgres"])
async def test_claim_of_dead_worker_expires(
    amqp_url: str, store_bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A worker that dies mid-handler holding the claim does not block the key: once the
    lease runs out another replica handles the message, exactly once."""
    started = asyncio.Event()
    effects: Counter[str] = Counter()

    class SlowWorker(FastRetries):
        queue = queue_name
        shutdown_grace = 0.01

        async def handle(self, msg: Work, ctx: Context) -> None:
            effects[self.bus.service] += 1
            started.set()
            if self.bus.service == "tests.doomed":
                await asyncio.Event().wait()  # hangs until the worker is killed

    dying = DeadHolder(store_bus.idempotency, lease=1.0)
    async with Bus.connect(amqp_url, service="tests.doomed", idempotency=dying) as doomed_bus:
        doomed = await worker_factory(SlowWorker, doomed_bus)
        await store_bus.send(Work(n=1))
        await asyncio.wait_for(started.wait(), 10)
        survivor = await worker_factory(SlowWorker, store_bus)
        await doomed.stop()  # handler cancelled, claim kept, delivery returned unacked
    await eventually(lambda: survivor.stats.handled == 1, timeout=20)
    assert effects == {"tests.doomed": 1, "tests": 1}
    assert survivor.stats.retried >= 1  # it found the key busy until the lease expired
