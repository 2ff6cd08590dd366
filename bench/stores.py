"""Workload S: the idempotency stores a framework Worker consumes through.

`noop` is the baseline ("without a store"): it implements the store protocol, always
claims, and does nothing else. Every other store is opened from its URL by the Bus, as a
service would. The scope the worker claims keys in is its queue, whose name is unique per
run, so the rows and keys a run wrote are found by that scope and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator

from framework.idempotency import ClaimResult, IdempotencyStore

#: the order the stores run in (and are reported in); `noop` first, the baseline. The
#: `outbox-*` rows are the worker with a `database` (framework.outbox): memory:// keys, and a
#: handler that commits its inbox row, one business row and one event (outbox row) per
#: message, the event then published with a confirm and marked sent in batches.
STORES = ["noop", "memory", "sqlite", "redis", "postgres", "outbox-sqlite", "outbox-postgres"]
OUTBOX_STORES = {"outbox-sqlite", "outbox-postgres"}
BASELINE_STORE = "noop"

REDIS_URL = "redis://127.0.0.1:6379/15"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or REDIS_URL


def postgres_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL") or POSTGRES_URL


class NoopStore:
    """The IdempotencyStore protocol doing nothing: every key is claimed, nothing is kept."""

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        return ClaimResult.CLAIMED

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        return True

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        return True

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


def describe(store: str) -> str:
    """What one store label stands for, as the report shows it."""
    from framework.wire.urls import mask_url

    return {
        "noop": "`bench.stores.NoopStore`: always CLAIMED, stores nothing (the baseline)",
        "memory": "`memory://` (the default: in-process, bounded)",
        "sqlite": "`sqlite:///<temporary file>` (WAL, one thread)",
        "redis": f"`{mask_url(redis_url())}` (one script call per batch of claims and completions)",
        "postgres": f"`{mask_url(postgres_url())}` (one INSERT ... ON CONFLICT over arrays "
        "per batch of claims, one per batch of completions)",
        "outbox-sqlite": "worker `database = sqlite:///<temporary file>`: per message an inbox "
        "lookup, one transaction (inbox + business row + outbox row), a "
        "confirmed event publish, a batched mark",
        "outbox-postgres": "worker `database` = a fresh database on "
        f"`{mask_url(postgres_url())}`: the same per message as outbox-sqlite",
    }[store]


@contextlib.asynccontextmanager
async def store_for(store: str, scope: str) -> AsyncIterator[IdempotencyStore | str]:
    """What to pass as the Bus's `idempotency=` for `store`; afterwards, delete what the run
    wrote in `scope` (the worker's queue): Redis keys, PostgreSQL rows, the SQLite file."""
    if store == "noop":
        yield NoopStore()
    elif store == "memory" or store in OUTBOX_STORES:
        yield "memory://"
    elif store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-idem-") as tmp:
            yield f"sqlite:///{os.path.join(tmp, 'idempotency.db')}"  # absolute: 4 slashes
    elif store == "redis":
        try:
            yield redis_url()
        finally:
            await _delete_redis_scope(redis_url(), scope)
    elif store == "postgres":
        try:
            yield postgres_url()
        finally:
            await _delete_postgres_scope(postgres_url(), scope)
    else:
        raise ValueError(f"unknown store {store!r}; choose from {STORES}")


@contextlib.asynccontextmanager
async def database_for(store: str) -> AsyncIterator[str | None]:
    """The worker `database` URL for an `outbox-*` store (None for the others), with its
    business table; the SQLite file or PostgreSQL database is removed afterwards."""
    if store == "outbox-sqlite":
        import sqlite3

        with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
            path = os.path.join(tmp, "service.db")
            with sqlite3.connect(path) as db:
                db.execute(BUSINESS_TABLE)
            yield f"sqlite:///{path}"
    elif store == "outbox-postgres":
        import uuid

        import asyncpg

        name = f"bench_outbox_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(postgres_url())
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = postgres_url().rsplit("/", 1)[0] + f"/{name}"
        try:
            conn = await asyncpg.connect(url)
            await conn.execute(BUSINESS_TABLE)
            await conn.close()
            yield url
        finally:
            admin = await asyncpg.connect(postgres_url())
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    else:
        yield None


BUSINESS_TABLE = "CREATE TABLE IF NOT EXISTS bench_orders (order_id TEXT NOT NULL)"


async def server_version(store: str) -> str:
    """The Redis or PostgreSQL server's version ("" for the in-process stores)."""
    if store == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url(), decode_responses=True)
        try:
            return f"Redis {(await client.info('server'))['redis_version']}"
        finally:
            await client.aclose()
    if store in ("postgres", "outbox-postgres"):
        import asyncpg

        conn = await asyncpg.connect(postgres_url())
        try:
            commit = await conn.fetchval("SHOW synchronous_commit")
            return (
                f"PostgreSQL {await conn.fetchval('SHOW server_version')}, "
                f"synchronous_commit={commit}"
            )
        finally:
            await conn.close()
    return ""


#: the scopes (queue names) workload S uses: `bench.<contender>.S-<store>.<uuid>`
LEFTOVER_SCOPES = "bench.*.S-*"


async def sweep_leftovers() -> int:
    """Delete the Redis keys and PostgreSQL rows of S runs killed before their cleanup, as
    `common.sweep_leftovers` does for queues (one bench at a time). Returns how many."""
    deleted = 0
    with contextlib.suppress(Exception):  # a store that is down fails its measurement later
        deleted += await _delete_redis_scope(redis_url(), LEFTOVER_SCOPES, literal=False)
    with contextlib.suppress(Exception):
        deleted += await _delete_postgres_scope(postgres_url(), LEFTOVER_SCOPES, literal=False)
    return deleted


async def _delete_redis_scope(url: str, scope: str, *, literal: bool = True) -> int:
    import redis.asyncio as aioredis

    from framework.idempotency.redis import redis_key

    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        pattern = redis_key(_glob_escape(scope) if literal else scope, "*")
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def _delete_postgres_scope(url: str, scope: str, *, literal: bool = True) -> int:
    """Delete the rows of `scope` (a glob with `*` if not `literal`); returns how many."""
    import asyncpg

    if literal:
        query, arg = "DELETE FROM fw_idempotency WHERE scope = $1", scope
    else:
        like = scope.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query, arg = "DELETE FROM fw_idempotency WHERE scope LIKE $1", like.replace("*", "%")
    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute(query, arg)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()
    return int(status.split()[-1])
