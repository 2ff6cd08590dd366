"""The service's database in PostgreSQL (asyncpg): a pool, one connection per transaction.

Relays claim rows with `FOR UPDATE SKIP LOCKED` inside a short transaction that takes a
transaction-level advisory lock first: concurrent claimers never wait on each other's rows
and never split a stream between them (which would publish it out of order). A claim is a
lease (`claimed_by`, `claimed_until`), so publishing happens outside any transaction.
Times are the relays' wall clocks (epoch seconds), as for SQLite.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from framework.outbox.database import DatabaseUnavailable
from framework.outbox.rows import ClaimedRow, NewRow, envelope_from_json, envelope_json
from framework.wire.urls import mask_text, mask_url

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fw_inbox (
        queue text NOT NULL,
        key text NOT NULL,
        handled_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (queue, key))""",
    "CREATE INDEX IF NOT EXISTS fw_inbox_expiry ON fw_inbox (expires_at)",
    """CREATE TABLE IF NOT EXISTS fw_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream text NOT NULL,
        message_key text NOT NULL,
        exchange text NOT NULL,
        routing_key text NOT NULL,
        mandatory boolean NOT NULL,
        envelope jsonb NOT NULL,
        body bytea NOT NULL,
        created_at double precision NOT NULL,
        claimed_by text,
        claimed_until double precision,
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        sent_at double precision)""",
    "CREATE INDEX IF NOT EXISTS fw_outbox_unsent ON fw_outbox (stream, id) WHERE sent_at IS NULL",
    "CREATE INDEX IF NOT EXISTS fw_outbox_sent ON fw_outbox (sent_at) WHERE sent_at IS NOT NULL",
)
_SCHEMA_LOCK = 0x66772D6F7462  # "fw-otb": concurrent CREATE IF NOT EXISTS can collide
_CLAIM_LOCK = 0x66772D636C6D  # "fw-clm": one claimer at a time (a few ms)
_INBOX_INSERT = """INSERT INTO fw_inbox (queue, key, handled_at, expires_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT (queue, key) DO NOTHING"""
_SEEN = "SELECT 1 FROM fw_inbox WHERE queue = $1 AND key = $2"
_OUTBOX_INSERT = """INSERT INTO fw_outbox (stream, message_key, exchange, routing_key, mandatory,
    envelope, body, created_at, claimed_by, claimed_until)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[],
                         $6::jsonb[], $7::bytea[], $8::float8[], $9::text[], $10::float8[])
    RETURNING id"""
_CLAIM = """WITH free AS (
        SELECT id FROM fw_outbox AS o
        WHERE o.sent_at IS NULL AND (o.claimed_until IS NULL OR o.claimed_until <= $2)
          AND NOT EXISTS (SELECT 1 FROM fw_outbox AS p
              WHERE p.stream = o.stream AND p.id < o.id AND p.sent_at IS NULL
                AND p.claimed_until > $2)
        ORDER BY o.id LIMIT $4 FOR UPDATE SKIP LOCKED)
    UPDATE fw_outbox AS t SET claimed_by = $1, claimed_until = $3, attempts = t.attempts + 1
    FROM free WHERE t.id = free.id
    RETURNING t.id, t.stream, t.exchange, t.routing_key, t.mandatory, t.envelope, t.body,
        t.created_at, t.attempts"""
_SENT = """UPDATE fw_outbox SET sent_at = $3, claimed_until = NULL
    WHERE id = ANY($2::bigint[]) AND claimed_by = $1"""
_RELEASE = """UPDATE fw_outbox SET claimed_by = NULL, claimed_until = $3, last_error = $4
    WHERE id = ANY($2::bigint[]) AND claimed_by = $1 AND sent_at IS NULL"""
_PURGE_INBOX = """DELETE FROM fw_inbox WHERE ctid IN (
    SELECT ctid FROM fw_inbox WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"""
_PURGE_SENT = """DELETE FROM fw_outbox WHERE id IN (
    SELECT id FROM fw_outbox WHERE sent_at IS NOT NULL AND sent_at <= $1
    LIMIT $2 FOR UPDATE SKIP LOCKED)"""
_BACKLOG = "SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL"

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)

# what a statement inside a transaction raises when the server went away (not OSError in
# general: a handler's own I/O inside the transaction is not the database's failure)
_LOST: tuple[type[BaseException], ...] = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the server is not reachable now", not "wrong SQL"."""
    return isinstance(exc, _UNAVAILABLE)


def affected(status: str) -> int:
    """Rows changed according to a command status such as 'INSERT 0 1' or 'UPDATE 3'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Transaction:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._staged: list[tuple[Sequence[NewRow], str | None, float, float | None]] = []
        self.staged_ids: list[int] = []

    async def execute(self, sql: str, *params: Any) -> int:
        return affected(await self.connection.execute(sql, *params))

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        return list(await self.connection.fetch(sql, *params))

    async def insert_inbox(self, queue: str, key: str, now: float, expires_at: float) -> bool:
        return await self.execute(_INBOX_INSERT, queue, key, now, expires_at) == 1

    def stage_outbox(
        self, rows: Sequence[NewRow], owner: str | None, now: float, claimed_until: float | None
    ) -> None:
        self._staged.append((rows, owner, now, claimed_until))

    async def flush_outbox(self) -> None:
        """Insert the staged rows (one statement per stage), just before the commit."""
        for rows, owner, now, claimed_until in self._staged:
            records = await self.connection.fetch(
                _OUTBOX_INSERT,
                [r.stream for r in rows],
                [r.key for r in rows],
                [r.exchange for r in rows],
                [r.routing_key for r in rows],
                [r.mandatory for r in rows],
                [envelope_json(r.envelope) for r in rows],
                [r.envelope.body for r in rows],
                [now] * len(rows),
                [owner] * len(rows),
                [claimed_until] * len(rows),
            )
            self.staged_ids.extend(int(r[0]) for r in records)


class PostgresDatabase:
    """The inbox and outbox tables (created if missing) in the service's PostgreSQL."""

    def __init__(self, url: str, pool: Any, *, acquire_timeout: float) -> None:
        self._url = url
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(
        cls, url: str, *, max_size: int = 10, acquire_timeout: float = 5.0
    ) -> PostgresDatabase:
        """Connect a pool to `url` and create the tables if missing."""
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=max_size, timeout=acquire_timeout, init=_init
            )
        except Exception as exc:
            raise _unavailable(url, exc) from exc
        database = cls(url, pool, acquire_timeout=acquire_timeout)
        try:
            async with database.begin() as tx:
                await tx.connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                for statement in SCHEMA:
                    await tx.connection.execute(statement)
        except BaseException:
            await pool.close()
            raise
        return database

    @property
    def masked_url(self) -> str:
        return mask_url(self._url)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[_Transaction]:
        try:
            connection = await self._pool.acquire(timeout=self._acquire_timeout)
        except Exception as exc:
            raise _unavailable(self._url, exc) from exc
        try:
            transaction = connection.transaction()
            try:
                await transaction.start()
            except Exception as exc:
                raise _unavailable(self._url, exc) if is_unavailable(exc) else exc from exc
            driver = _Transaction(connection)
            try:
                yield driver
                await driver.flush_outbox()
            except BaseException as exc:
                await asyncio.shield(_quietly_rollback(transaction))
                if isinstance(exc, _LOST):  # the connection broke under a statement
                    raise _unavailable(self._url, exc) from exc
                raise
            try:
                await asyncio.shield(transaction.commit())
            except Exception as exc:
                if is_unavailable(exc):
                    raise _unavailable(self._url, exc) from exc
                raise
        finally:
            await asyncio.shield(self._release(connection))

    async def _release(self, connection: Any) -> None:
        try:
            await self._pool.release(connection)
        except Exception:  # noqa: BLE001 - a broken connection is discarded by the pool anyway
            connection.terminate()

    async def _one(self, sql: str, *params: Any) -> Any:
        async with self.begin() as tx:
            return await tx.connection.fetchval(sql, *params)

    async def seen(self, queue: str, key: str) -> bool:
        return await self._one(_SEEN, queue, key) is not None

    async def claim(self, owner: str, limit: int, now: float, lease: float) -> list[ClaimedRow]:
        async with self.begin() as tx:
            await tx.connection.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            records = await tx.connection.fetch(_CLAIM, owner, now, now + lease, limit)
        return sorted((_claimed(r) for r in records), key=lambda r: r.id)

    async def mark_sent(self, owner: str, ids: Sequence[int], now: float) -> None:
        async with self.begin() as tx:
            await tx.connection.execute(_SENT, owner, list(ids), now)

    async def release(self, owner: str, ids: Sequence[int], retry_at: float, error: str) -> None:
        async with self.begin() as tx:
            await tx.connection.execute(_RELEASE, owner, list(ids), retry_at, error[:500])

    async def purge(self, now: float, sent_before: float, batch: int) -> int:
        async with self.begin() as tx:
            inbox = affected(await tx.connection.execute(_PURGE_INBOX, now, batch))
            sent = affected(await tx.connection.execute(_PURGE_SENT, sent_before, batch))
        return inbox + sent

    async def backlog(self) -> int:
        return int(await self._one(_BACKLOG))

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5.0):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()


async def _init(connection: Any) -> None:
    await connection.set_type_codec("jsonb", encoder=str, decoder=json.loads, schema="pg_catalog")


async def _quietly_rollback(transaction: Any) -> None:
    try:
        await transaction.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone: the server rolled back already
        return


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"PostgreSQL {mask_url(url)} unavailable: {type(exc).__name__}: {mask_text(str(exc))}"
    )


def _claimed(record: Any) -> ClaimedRow:
    return ClaimedRow(
        id=int(record[0]),
        stream=record[1],
        exchange=record[2],
        routing_key=record[3],
        mandatory=bool(record[4]),
        envelope=envelope_from_json(record[5], record[6]),
        created_at=float(record[7]),
        attempts=int(record[8]),
    )
