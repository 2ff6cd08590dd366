"""A replica fed by real events: updates land, duplicates and late versions are ignored,
a SQLite replica keeps its data across a worker restart, refresh asks the owner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from framework import ApplyResult, Bus, Command, Context, Event, Replica, Worker
from framework.testing.pytest_plugin import WorkerFactory


class PriceChanged(Event):
    type_name = "tests.replica.PriceChanged.v1"
    sku: str
    version: int
    cents: int


class RefreshPrices(Command):
    type_name = "tests.replica.RefreshPrices.v1"


def prices(path: Path) -> Replica[PriceChanged]:
    return Replica(
        "prices", PriceChanged, key=lambda p: p.sku, version=lambda p: p.version, path=path
    )


def feed(
    queue_name: str, replica: Replica[PriceChanged], seen: asyncio.Queue[ApplyResult]
) -> type[Worker]:
    class PriceFeed(Worker):
        queue = queue_name
        retry_base_delay = 0.1
        retry_max_delay = 0.2

        async def handle(self, msg: PriceChanged, ctx: Context) -> None:
            seen.put_nowait(replica.apply(msg, event_key=ctx.message_id))

    return PriceFeed


async def next_results(seen: asyncio.Queue[ApplyResult], n: int) -> list[ApplyResult]:
    return [await asyncio.wait_for(seen.get(), 10) for _ in range(n)]


async def test_events_update_the_replica_and_survive_a_restart(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str, tmp_path: Path
) -> None:
    """Events in -> replica updated; a late older version is stale; after a restart from
    the SQLite file the data is there and a redelivered event changes nothing."""
    path = tmp_path / "prices.db"
    seen: asyncio.Queue[ApplyResult] = asyncio.Queue()
    replica = prices(path)
    worker = await worker_factory(feed(queue_name, replica, seen))
    await bus.publish(PriceChanged(sku="a", version=2, cents=250), idempotency_key="a-v2")
    await bus.publish(PriceChanged(sku="a", version=1, cents=100), idempotency_key="a-v1")
    assert await next_results(seen, 2) == [ApplyResult.APPLIED, ApplyResult.STALE]
    await worker.stop()
    replica.close()

    reopened = prices(path)
    assert reopened.get("a") == PriceChanged(sku="a", version=2, cents=250)
    assert reopened.last_updated is not None
    restarted = await worker_factory(feed(queue_name, reopened, seen))
    # a new bus process has an empty idempotency store: the replica itself must ignore it
    await bus.publish(PriceChanged(sku="a", version=2, cents=250), idempotency_key="a-v2-again")
    await bus.publish(PriceChanged(sku="b", version=1, cents=5), idempotency_key="b-v1")
    assert await next_results(seen, 2) == [ApplyResult.CURRENT, ApplyResult.APPLIED]
    assert len(reopened) == 2
    await restarted.stop()
    reopened.close()


async def test_duplicate_event_keys_are_ignored(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str, tmp_path: Path
) -> None:
    """The same event published twice (same key) is applied once."""
    seen: asyncio.Queue[ApplyResult] = asyncio.Queue()
    with prices(tmp_path / "p.db") as replica:
        worker = await worker_factory(feed(queue_name, replica, seen))
        for _ in range(2):
            await bus.publish(PriceChanged(sku="a", version=1, cents=1), idempotency_key="k")
        await bus.publish(PriceChanged(sku="a", version=2, cents=2), idempotency_key="k2")
        assert await next_results(seen, 1) == [ApplyResult.APPLIED]
        assert await next_results(seen, 1) == [ApplyResult.APPLIED]
        for _ in range(100):  # the duplicate's settlement may trail the newer event's
            if worker.stats.duplicates:
                break
            await asyncio.sleep(0.05)
        assert worker.stats.duplicates == 1
        assert replica.version("a") == 2


async def test_refresh_requests_reach_the_owner(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str, tmp_path: Path
) -> None:
    """While the replica is empty the refresher sends the owner its refresh command."""
    asked = asyncio.Event()

    class Owner(Worker):
        queue = queue_name

        async def handle(self, msg: RefreshPrices, ctx: Context) -> None:
            asked.set()

    await worker_factory(Owner)
    with prices(tmp_path / "p.db") as replica:
        async with replica.refreshing(bus, RefreshPrices, every=0.2) as refresher:
            await asyncio.wait_for(asked.wait(), 10)
        assert refresher.requests_sent >= 1
