"""The unit of work on the in-memory bus with a real SQLite file: what commits together,
what a redelivery does, what a misuse gets, and what the relay sweeps and cleans up."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TypeVar

import pytest

from framework import Command, ConfigurationError, Context, Event, Worker
from framework.ops.metrics import Metrics
from framework.outbox import Relay, RelayPolicy, open_database
from framework.settings import Settings
from framework.testing import MemoryBus

W = TypeVar("W", bound=Worker)
TABLE = "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY)"


class AddItem(Command):
    type_name = "tests.outbox.AddItem"
    item_id: str
    fail: bool = False


class ItemAdded(Event):
    type_name = "tests.outbox.ItemAdded"
    item_id: str


RUNS: list[str] = []  # item ids, once per handler run


class ItemWorker(Worker):
    queue = "outbox-items"
    retry_base_delay = 0.01
    retry_max_delay = 0.02

    async def handle(self, msg: AddItem, ctx: Context) -> None:
        RUNS.append(msg.item_id)
        async with ctx.transaction() as tx:
            await tx.execute(TABLE)
            await tx.execute("INSERT INTO items VALUES (?)", msg.item_id)
            await ctx.publish(ItemAdded(item_id=msg.item_id))
            if msg.fail:
                raise RuntimeError("fails after its writes, inside the transaction")


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    RUNS.clear()
    return tmp_path / "service.db"


def on_database(cls: type[W], path: Path) -> type[W]:
    """`cls` with its `database` in the file at `path`."""
    return type(cls.__name__, (cls,), {"database": f"sqlite:///{path}"})


async def start(bus: MemoryBus, path: Path, cls: type[W] | None = None) -> W:
    return await bus.start_worker(on_database(cls or ItemWorker, path))  # type: ignore[arg-type]


async def test_row_inbox_and_event_commit_together(test_bus: MemoryBus, db_path: Path) -> None:
    """One delivery: its business row, its inbox row and its event, all once."""
    worker: ItemWorker = await start(test_bus, db_path)
    await test_bus.send(AddItem(item_id="a"), idempotency_key="add-a")
    await test_bus.drain()
    await worker.stop()
    assert rows(db_path, "SELECT id FROM items") == [("a",)]
    assert rows(db_path, "SELECT queue, key FROM fw_inbox") == [("outbox-items", "add-a")]
    assert test_bus.published_of(ItemAdded) == [ItemAdded(item_id="a")]
    assert rows(db_path, "SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL") == [(0,)]


async def test_redelivery_after_commit_is_a_duplicate(test_bus: MemoryBus, db_path: Path) -> None:
    """The key store forgotten (a restart), the inbox still says done: handler not run."""
    worker: ItemWorker = await start(test_bus, db_path)
    await test_bus.send(AddItem(item_id="a"), idempotency_key="add-a")
    await test_bus.drain()
    await test_bus.idempotency.close()  # as if the process restarted with a fresh key store
    await test_bus.send(AddItem(item_id="a"), idempotency_key="add-a")
    await test_bus.drain()
    assert RUNS == ["a"] and worker.stats.duplicates == 1
    assert len(test_bus.published_of(ItemAdded)) == 1


async def test_a_failure_inside_the_transaction_leaves_nothing(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """Rolled back: no business row, no inbox row, no outbox row, nothing published."""
    worker: ItemWorker = await start(test_bus, db_path)
    await test_bus.send(AddItem(item_id="a", fail=True), idempotency_key="add-a")
    await test_bus.drain()
    await worker.stop()
    assert len(RUNS) == worker.spec.policy.max_attempts
    assert rows(db_path, "SELECT COUNT(*) FROM fw_inbox") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM fw_outbox") == [(0,)]
    assert rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'items'") in (
        [],
        [("items",)],
    )
    assert test_bus.published_of(ItemAdded) == []


class PublishesAfterCommit(ItemWorker):
    queue = "outbox-late"

    async def handle(self, msg: AddItem, ctx: Context) -> None:
        async with ctx.transaction() as tx:
            await tx.execute(TABLE)
        await ctx.publish(ItemAdded(item_id=msg.item_id))


class PublishesAroundTheOutbox(ItemWorker):
    queue = "outbox-bypass"

    async def handle(self, msg: AddItem, ctx: Context) -> None:
        async with ctx.transaction() as tx:
            await tx.execute(TABLE)
            await tx.execute("INSERT INTO items VALUES (?)", msg.item_id)
            await self.bus.publish(ItemAdded(item_id=msg.item_id))


@pytest.mark.parametrize(
    ("worker_cls", "error"),
    [
        (PublishesAfterCommit, "after ctx.transaction() committed"),
        (PublishesAroundTheOutbox, "inside an open outbox transaction"),
    ],
)
async def test_publishing_around_the_transaction_is_refused(
    test_bus: MemoryBus, db_path: Path, worker_cls: type[ItemWorker], error: str
) -> None:
    """A publish that could be lost or escape a rollback: dead-lettered, saying how to fix."""
    await start(test_bus, db_path, worker_cls)
    await test_bus.send(AddItem(item_id="a"), idempotency_key="add-a")
    await test_bus.drain()
    [dead] = test_bus.dead_letters(worker_cls.queue)
    assert dead.reason == "permanent" and error in (dead.error or "")
    assert test_bus.published_of(ItemAdded) == []


def test_a_transaction_needs_the_worker_database() -> None:
    """ctx.transaction() on a worker without `database` says which setting to add."""
    ctx = Context(
        bus=None,  # type: ignore[arg-type]
        queue="q",
        message_id="m",
        correlation_id="c",
        attempt=1,
    )
    with pytest.raises(ConfigurationError, match="database = "):
        ctx.transaction()


async def test_rows_written_through_bus_outbox_are_swept(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """A web endpoint's own sqlite3 transaction: committed rows reach the queue via a relay;
    rolled-back ones never do."""
    await test_bus.declare(ItemWorker)
    database = await open_database(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    await test_bus.outbox(conn).send(AddItem(item_id="kept"), idempotency_key="kept")
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    await test_bus.outbox(conn).send(AddItem(item_id="gone"), idempotency_key="gone")
    conn.execute("ROLLBACK")
    async with Relay(test_bus, database, RelayPolicy(poll_interval=0.01)) as relay:
        assert await relay.sweep() == 1
    [queued] = test_bus.messages("outbox-items")
    assert queued.message_id == "kept"
    assert await database.backlog() == 0
    conn.close()
    await database.close()


async def test_bus_outbox_needs_an_open_transaction(test_bus: MemoryBus, db_path: Path) -> None:
    """Without BEGIN the row would commit alone: refused with what to do."""
    await (await open_database(f"sqlite:///{db_path}")).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    with pytest.raises(ConfigurationError, match="no open transaction"):
        await test_bus.outbox(conn).send(AddItem(item_id="x"))
    conn.close()


async def test_two_relays_never_claim_the_same_row(test_bus: MemoryBus, db_path: Path) -> None:
    """Claims are leases: a second relay gets only rows nobody holds."""
    database = await open_database(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    for i in range(6):
        await test_bus.outbox(conn, stream=f"s{i}").send(AddItem(item_id=str(i)))
    conn.execute("COMMIT")
    first = await database.claim("relay-1", 4, now=1e12, lease=30)
    second = await database.claim("relay-2", 4, now=1e12, lease=30)
    assert len(first) == 4 and len(second) == 2
    assert not {r.id for r in first} & {r.id for r in second}
    after_lease = await database.claim("relay-2", 10, now=1e12 + 31, lease=30)
    assert {r.id for r in after_lease} == {r.id for r in first + second}
    conn.close()
    await database.close()


async def test_a_stream_is_not_published_past_a_row_someone_holds(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """Order per stream: while one relay holds a stream's first row, nobody takes the next."""
    database = await open_database(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    writer = test_bus.outbox(conn, stream="orders/1")
    for i in range(3):
        await writer.send(AddItem(item_id=str(i)))
    await test_bus.outbox(conn, stream="orders/2").send(AddItem(item_id="other"))
    conn.execute("COMMIT")
    [held] = await database.claim("relay-1", 1, now=1e12, lease=30)
    rest = await database.claim("relay-2", 10, now=1e12, lease=30)
    assert [r.stream for r in rest] == ["orders/2"] and held.stream == "orders/1"
    await database.release("relay-1", [held.id], retry_at=1e12, error="test")
    again = await database.claim("relay-2", 10, now=1e12, lease=30)
    assert [r.id for r in again] == sorted(r.id for r in again) and len(again) == 3
    conn.close()
    await database.close()


async def test_cleanup_deletes_expired_inbox_and_old_sent_rows(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """Retention: done in small batches until nothing is left to delete; unsent rows stay."""
    database = await open_database(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO fw_inbox VALUES ('q', ?, 0, 1)", [(str(i),) for i in range(7)])
    conn.execute("INSERT INTO fw_inbox VALUES ('q', 'fresh', 0, 1e13)")
    writer = test_bus.outbox(conn)
    for i in range(5):
        await writer.send(AddItem(item_id=str(i)))
    conn.execute("UPDATE fw_outbox SET sent_at = 10 WHERE id <= 4")
    conn.execute("COMMIT")
    relay = Relay(
        test_bus, database, RelayPolicy(retention=100, cleanup_batch=2), clock=lambda: 1000.0
    )
    assert await relay.cleanup() == 7 + 4
    assert rows(db_path, "SELECT key FROM fw_inbox") == [("fresh",)]
    assert rows(db_path, "SELECT COUNT(*) FROM fw_outbox") == [(1,)]
    conn.close()
    await database.close()


async def test_a_failed_publish_after_commit_is_retried_by_the_sweep(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """Unroutable right after the commit: the row stays unsent, handed back with a backoff,
    and the sweep publishes it once a queue exists (nothing lost, nothing raised)."""
    now = [1000.0]
    database = await open_database(f"sqlite:///{db_path}")
    relay = Relay(test_bus, database, RelayPolicy(lease=30), clock=lambda: now[0])
    async with relay.transaction() as tx:
        await tx.send(AddItem(item_id="early"), idempotency_key="early")
    assert relay.stats.failed == 1 and await database.backlog() == 1
    await test_bus.declare(ItemWorker)
    assert await relay.sweep() == 0  # still backing off
    now[0] += 1.0
    assert await relay.sweep() == 1
    [queued] = test_bus.messages("outbox-items")
    assert queued.message_id == "early" and await database.backlog() == 0
    await relay.close()
    await database.close()


class Nowhere(Command):
    type_name = "tests.outbox.Nowhere"  # no queue takes it: unroutable


class SendsNowhere(ItemWorker):
    queue = "outbox-stuck"

    async def handle(self, msg: AddItem, ctx: Context) -> None:
        async with ctx.transaction():
            await ctx.send(Nowhere())


def sample(metrics: Metrics, name: str, queue: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"queue": queue})


async def test_outbox_publish_latency_reaches_its_histogram(
    test_bus: MemoryBus, db_path: Path
) -> None:
    """Each row the relay publishes is one observation of commit-to-confirm seconds."""
    metrics = Metrics()
    worker: ItemWorker = await start(test_bus, db_path)
    metrics.watch(worker)
    for item in ("a", "b"):
        await test_bus.send(AddItem(item_id=item), idempotency_key=f"add-{item}")
    await test_bus.drain()
    await worker.stop()
    latency = "framework_outbox_publish_latency_seconds"
    assert sample(metrics, f"{latency}_count", "outbox-items") == 2
    assert (sample(metrics, f"{latency}_sum", "outbox-items") or 0.0) >= 0.0


async def test_rows_left_unsent_show_in_the_backlog_gauge(db_path: Path) -> None:
    """A row the relay cannot publish (unroutable) stays in the outbox and in the gauge."""
    metrics = Metrics()
    async with MemoryBus(settings=Settings(outbox_poll_interval=0.02)) as bus:
        worker = await start(bus, db_path, SendsNowhere)
        metrics.watch(worker)
        assert sample(metrics, "framework_outbox_backlog", "outbox-stuck") == 0
        await bus.send(AddItem(item_id="a"), idempotency_key="add-a")
        await bus.drain()
        async with asyncio.timeout(10):
            # a gauge has no event to wait on: polled, bounded by the timeout
            while sample(metrics, "framework_outbox_backlog", "outbox-stuck") != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await worker.stop()
    assert rows(db_path, "SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL") == [(1,)]
