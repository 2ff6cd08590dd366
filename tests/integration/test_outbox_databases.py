"""The outbox on real databases (SQLite file, the local PostgreSQL in a database of the
test's own) and a real broker: concurrent relays, order per stream, `bus.outbox(conn)`."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from framework import Bus, Context, Worker
from framework.outbox import DatabaseUnavailable, Relay, RelayPolicy, open_database
from framework.testing import BrokerAdmin
from tests.integration.outbox_harness import postgres_database, sqlite_database
from tests.integration.outbox_service import AddItem

ROWS = 300
STREAMS = 30


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_database(tmp_path)
        return
    async with postgres_database() as url:
        yield url


async def write_rows(bus: Bus, url: str, rows: list[tuple[str, str]]) -> None:
    """Insert (stream, item) rows through `bus.outbox(conn)` on a connection of our own."""
    await (await open_database(url)).close()  # creates the tables
    if url.startswith("sqlite"):
        conn = sqlite3.connect(urlsplit(url).path[1:], isolation_level=None)
        conn.execute("BEGIN")
        for stream, item in rows:
            await bus.outbox(conn, stream=stream).send(AddItem(item_id=item), idempotency_key=item)
        conn.execute("COMMIT")
        conn.close()
        return
    pg = await asyncpg.connect(url)
    try:
        async with pg.transaction():
            for stream, item in rows:
                await bus.outbox(pg, stream=stream).send(
                    AddItem(item_id=item), idempotency_key=item
                )
    finally:
        await pg.close()


def queue_worker(queue: str) -> type[Worker]:
    class AddItemQueue(Worker):
        async def handle(self, msg: AddItem, ctx: Context) -> None:
            return None

    AddItemQueue.queue = queue
    return AddItemQueue


async def test_concurrent_relays_publish_each_row_once_and_streams_in_order(
    bus: Bus,
    broker_admin: BrokerAdmin,
    queue_name: str,
    database_url: str,
) -> None:
    """Three relays sweep one outbox at once: every row published once, each stream in the
    order it was committed."""
    worker_cls = queue_worker(queue_name)
    await bus.declare(worker_cls)
    rows = [(f"s{n % STREAMS}", f"{queue_name}-{n}") for n in range(ROWS)]
    await write_rows(bus, database_url, rows)
    databases = [await open_database(database_url) for _ in range(3)]
    relays = [Relay(bus, db, RelayPolicy(batch=25, lease=30)) for db in databases]
    try:

        async def sweep_until_empty(relay: Relay) -> None:
            while await relay.sweep():
                pass

        await asyncio.gather(*(sweep_until_empty(r) for r in relays))
        backlog = await databases[0].backlog()
    finally:
        for relay in relays:
            await relay.close()
        for db in databases:
            await db.close()
        published = await broker_admin.drain(queue_name)
        await broker_admin.delete_worker_queues(queue_name, worker_cls(bus).spec.policy.tiers_ms())
    assert backlog == 0
    keys = [m.message_id or "" for m in published]
    assert sorted(keys) == sorted(item for _, item in rows), "a row published twice or never"
    by_stream: dict[str, list[str]] = defaultdict(list)
    stream_of = {item: stream for stream, item in rows}
    for key in keys:
        by_stream[stream_of[str(key)]].append(str(key))
    for stream, items in by_stream.items():
        assert items == [item for s, item in rows if s == stream], f"{stream} out of order"
    assert sum(r.stats.published for r in relays) == ROWS
    assert sum(1 for r in relays if r.stats.published) >= 2, "one relay did all the work"


async def test_rows_of_a_rolled_back_transaction_are_never_sent(
    bus: Bus,
    broker_admin: BrokerAdmin,
    queue_name: str,
    database_url: str,
) -> None:
    """`bus.outbox(conn)` inside a transaction that rolls back: nothing reaches the queue."""
    worker_cls = queue_worker(queue_name)
    await bus.declare(worker_cls)
    await (await open_database(database_url)).close()
    if database_url.startswith("sqlite"):
        conn: Any = sqlite3.connect(urlsplit(database_url).path[1:], isolation_level=None)
        conn.execute("BEGIN")
        await bus.outbox(conn).send(AddItem(item_id="gone"))
        conn.execute("ROLLBACK")
        conn.close()
    else:
        conn = await asyncpg.connect(database_url)
        transaction = conn.transaction()
        await transaction.start()
        await bus.outbox(conn).send(AddItem(item_id="gone"))
        await transaction.rollback()  # the endpoint failed after enqueueing
        await conn.close()
    database = await open_database(database_url)
    try:
        async with Relay(bus, database) as relay:
            assert await relay.sweep() == 0
        assert await database.backlog() == 0
    finally:
        await database.close()
        await broker_admin.delete_worker_queues(queue_name, worker_cls(bus).spec.policy.tiers_ms())


async def test_relay_transaction_outside_handlers_publishes_after_commit(
    bus: Bus,
    broker_admin: BrokerAdmin,
    queue_name: str,
    database_url: str,
) -> None:
    """`relay.transaction()`: own writes and commands commit together, sent at once after."""
    worker_cls = queue_worker(queue_name)
    await bus.declare(worker_cls)
    database = await open_database(database_url)
    insert = (
        "INSERT INTO items VALUES (?, 0)"
        if database_url.startswith("sqlite")
        else "INSERT INTO items VALUES ($1, 0)"
    )
    try:
        async with Relay(bus, database) as relay:
            async with relay.transaction() as tx:
                await tx.execute(insert, "web-1")
                key = await tx.send(AddItem(item_id="web-1"))
            assert await broker_admin.wait_for_depth(queue_name, 1, timeout=10) == 1
            assert relay.stats.published == 1
        assert await database.backlog() == 0
    finally:
        await database.close()
        [message] = await broker_admin.drain(queue_name)
        await broker_admin.delete_worker_queues(queue_name, worker_cls(bus).spec.policy.tiers_ms())
    assert message.message_id == key


async def test_a_worker_whose_database_is_down_does_not_start(bus: Bus, queue_name: str) -> None:
    """Unreachable at start: run() fails with DatabaseUnavailable, its password masked."""
    worker_cls = type(
        "Unreachable",
        (queue_worker(queue_name),),
        {"database": "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"},
    )
    worker = worker_cls(bus)
    with pytest.raises(DatabaseUnavailable) as raised:
        await worker.run()
    with pytest.raises(DatabaseUnavailable):
        await worker.wait_ready()
    assert "127.0.0.1:1" in str(raised.value) and "s3cret" not in str(raised.value)
