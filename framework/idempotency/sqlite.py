"""SQLite idempotency store: embedded, survives restarts, shared by processes on one host.

One connection, used from one dedicated thread, so the event loop never blocks on disk and
calls are serialised in this process; SQLite's file lock serialises other processes. Expiry
uses the wall clock (`time.time`), because a monotonic clock means nothing after a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from framework.idempotency.store import ClaimResult

Clock = Callable[[], float]
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fw_idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    done INTEGER NOT NULL,
    token TEXT,
    expires_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID
"""
_CLAIM = """
INSERT INTO fw_idempotency (scope, key, done, token, expires_at) VALUES (?, ?, 0, ?, ?)
ON CONFLICT (scope, key) DO UPDATE
    SET done = 0, token = excluded.token, expires_at = excluded.expires_at
    WHERE fw_idempotency.expires_at <= ?
"""
_STATE = "SELECT done FROM fw_idempotency WHERE scope = ? AND key = ?"
_COMPLETE = """
INSERT INTO fw_idempotency (scope, key, done, token, expires_at) VALUES (?, ?, 1, NULL, ?)
ON CONFLICT (scope, key) DO UPDATE SET done = 1, token = NULL, expires_at = excluded.expires_at
"""
_RELEASE = "DELETE FROM fw_idempotency WHERE scope = ? AND key = ? AND done = 0 AND token = ?"
_PURGE = "DELETE FROM fw_idempotency WHERE expires_at <= ?"


class SqliteStore:
    """Keys in one table of a SQLite file (WAL); expired rows are purged now and then."""

    def __init__(self, path: str, *, clock: Clock = time.time,
                 purge_interval: float = 60.0) -> None:
        self._path = path
        self._clock = clock
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._tokens: dict[tuple[str, str], str] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fw-sqlite")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str, *, clock: Clock = time.time,
                   purge_interval: float = 60.0) -> SqliteStore:
        """Open (creating if missing) the database at `path`; `:memory:` is process-local."""
        store = cls(path, clock=clock, purge_interval=purge_interval)
        await store._call(store._connect)
        return store

    async def claim(self, scope: str, key: str, lease: float) -> ClaimResult:
        token = uuid.uuid4().hex
        result = await self._call(lambda: self._claim(scope, key, token, lease))
        if result is ClaimResult.CLAIMED:
            self._tokens[(scope, key)] = token
        return result

    async def complete(self, scope: str, key: str, retention: float) -> None:
        self._tokens.pop((scope, key), None)
        await self._call(lambda: self._execute(_COMPLETE, (scope, key, self._clock() + retention)))

    async def release(self, scope: str, key: str) -> None:
        token = self._tokens.pop((scope, key), None)
        if token is not None:
            await self._call(lambda: self._execute(_RELEASE, (scope, key, token)))

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def purge(self) -> int:
        """Delete every expired row now; returns how many went."""
        return await self._call(lambda: self._execute(_PURGE, (self._clock(),)))

    # ---- on the store's thread ------------------------------------------------------

    async def _call(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                             timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"SQLite idempotency store {self._path!r} is closed")
        return self._db

    def _execute(self, sql: str, params: tuple[object, ...]) -> int:
        return self._conn().execute(sql, params).rowcount

    def _claim(self, scope: str, key: str, token: str, lease: float) -> ClaimResult:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            self._execute(_PURGE, (now,))
        if self._execute(_CLAIM, (scope, key, token, now + lease, now)) == 1:
            return ClaimResult.CLAIMED
        row = self._conn().execute(_STATE, (scope, key)).fetchone()
        # No row: it expired and was purged by another process in between; it is free.
        if row is None:
            return self._claim(scope, key, token, lease)
        return ClaimResult.DONE if row[0] else ClaimResult.BUSY
