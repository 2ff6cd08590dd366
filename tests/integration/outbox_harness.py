"""Shared by the outbox crash tests: a database per test, the items table, and reading the
outcome (business rows, unsent outbox rows) from SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from tests.integration.outbox_service import POSTGRES_TABLE, SQLITE_TABLE

POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def postgres_database(server_url: str = POSTGRES_URL) -> AsyncIterator[str]:
    """A database of its own on the server (dropped afterwards): `fw_outbox_<random>`."""
    name = f"fw_outbox_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(POSTGRES_TABLE)
        finally:
            await conn.close()
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def sqlite_database(directory: Path) -> str:
    """A SQLite file with the items table, as a URL."""
    path = directory / "service.db"
    with sqlite3.connect(path) as db:
        db.execute(SQLITE_TABLE)
    return f"sqlite:///{path}"


async def read_outcome(url: str) -> tuple[list[str], int, int]:
    """(item ids of every business row, outbox rows not sent, outbox rows ever re-claimed)."""
    queries = (
        "SELECT item_id FROM items",
        "SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL",
        "SELECT COUNT(*) FROM fw_outbox WHERE attempts > 0",
    )
    if url.startswith("sqlite"):
        with sqlite3.connect(urlsplit(url).path[1:]) as db:
            items = [r[0] for r in db.execute(queries[0])]
            unsent, swept = (db.execute(q).fetchone()[0] for q in queries[1:])
        return items, unsent, swept
    conn = await asyncpg.connect(url)
    try:
        items = [r[0] for r in await conn.fetch(queries[0])]
        unsent, swept = [await conn.fetchval(q) for q in queries[1:]]
    finally:
        await conn.close()
    return items, unsent, swept


async def wait_relayed(amqp_url: str, database_url: str, queue: str, timeout: float = 60.0) -> int:
    """Wait until a worker consumes `queue` and the outbox has nothing unsent; the last
    unsent count. (Another process's database and consumers push no events: poll.)"""
    connection = await aio_pika.connect(amqp_url)
    unsent = -1
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), connection.channel() as channel:
                while True:
                    declared = await channel.declare_queue(queue, passive=True)
                    _, unsent, _ = await read_outcome(database_url)
                    if declared.declaration_result.consumer_count and unsent == 0:
                        return 0
                    await asyncio.sleep(0.2)
    finally:
        await connection.close()
    return unsent


async def wait_consuming(
    channel: aio_pika.abc.AbstractChannel, queue: str, timeout: float = 30.0
) -> bool:
    """Wait until `queue` has a consumer (a worker subprocess got ready); False if none."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.consumer_count:
                    return True
                await asyncio.sleep(0.05)
    return False
