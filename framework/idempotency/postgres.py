"""PostgreSQL idempotency store: shared by every replica; one row per (scope, key).

Claiming is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING`, atomic under
concurrent claims; done rows keep an expiry (the retention) and are purged now and then.
Expiry runs on the database clock (`clock_timestamp()`), so replicas' clocks do not matter.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from framework.idempotency.store import ClaimResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fw_idempotency (
    scope text NOT NULL,
    key text NOT NULL,
    done boolean NOT NULL,
    token text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
)
"""
_CLAIM = """
INSERT INTO fw_idempotency AS t (scope, key, done, token, expires_at)
VALUES ($1, $2, false, $3, clock_timestamp() + make_interval(secs => $4))
ON CONFLICT (scope, key) DO UPDATE
    SET done = false, token = excluded.token, expires_at = excluded.expires_at
    WHERE t.expires_at <= clock_timestamp()
RETURNING token
"""
_STATE = "SELECT done FROM fw_idempotency WHERE scope = $1 AND key = $2"
_COMPLETE = """
INSERT INTO fw_idempotency AS t (scope, key, done, token, expires_at)
VALUES ($1, $2, true, NULL, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (scope, key) DO UPDATE
    SET done = true, token = NULL, expires_at = excluded.expires_at
"""
_COMPLETE_FENCED = (
    _COMPLETE
    + """
    WHERE (NOT t.done AND t.token = $4) OR t.expires_at <= clock_timestamp()
RETURNING true
"""
)
_RENEW = """
UPDATE fw_idempotency SET expires_at = clock_timestamp() + make_interval(secs => $3)
WHERE scope = $1 AND key = $2 AND NOT done AND token = $4
RETURNING true
"""
_RELEASE = "DELETE FROM fw_idempotency WHERE scope = $1 AND key = $2 AND NOT done AND token = $3"
_PURGE = "DELETE FROM fw_idempotency WHERE expires_at <= clock_timestamp()"
# Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: serialise it.
_SCHEMA_LOCK = 0x66772D69646D  # "fw-idm"


class PostgresStore:
    """Keys in one table, created if missing; expired rows are purged now and then."""

    def __init__(
        self, pool: Any, *, purge_interval: float = 60.0, timeout: float | None = None
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._tokens: dict[tuple[str, str], str] = {}

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        max_size: int = 10,
        purge_interval: float = 60.0,
        timeout: float | None = None,
    ) -> PostgresStore:
        """Connect a pool to `url` and create the table if missing.

        `timeout` bounds connecting, acquiring a connection and every statement, so a server
        that stops answering fails calls instead of hanging them.
        """
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=timeout, command_timeout=timeout
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, purge_interval=purge_interval, timeout=timeout)

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        await self._maybe_purge()
        mine = token or uuid.uuid4().hex
        async with self._pool.acquire(timeout=self._timeout) as conn:
            if await conn.fetchval(_CLAIM, scope, key, mine, float(lease)) is not None:
                if token is None:
                    self._tokens[(scope, key)] = mine
                return ClaimResult.CLAIMED
            done = await conn.fetchval(_STATE, scope, key)
        if done is None:  # expired and purged in between: free again
            return await self.claim(scope, key, lease, token)
        return ClaimResult.DONE if done else ClaimResult.BUSY

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        renewed = await self._pool.fetchval(
            _RENEW, scope, key, float(lease), token, timeout=self._timeout
        )
        return renewed is not None

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
            await self._pool.execute(_COMPLETE, scope, key, float(retention), timeout=self._timeout)
            return None
        done = await self._pool.fetchval(
            _COMPLETE_FENCED, scope, key, float(retention), token, timeout=self._timeout
        )
        return done is not None

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._pool.execute(_RELEASE, scope, key, mine, timeout=self._timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def purge(self) -> None:
        """Delete every expired row now."""
        await self._pool.execute(_PURGE, timeout=self._timeout)

    async def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            await self.purge()
