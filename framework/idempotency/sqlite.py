"""SQLite idempotency store: embedded, survives restarts, shared by processes on one host.

One connection, used from one dedicated thread, so the event loop never blocks on disk and
calls are serialised in this process; SQLite's file lock serialises other processes. Expiry
uses the wall clock (`time.time`), because a monotonic clock means nothing after a restart.

Group commit: a worker claims before and completes after every handler, with up to
`prefetch` deliveries in flight. One autocommit statement (one transaction, one WAL append)
per call cost more than the rest of the framework per message, so calls go on a queue and the
thread runs everything pending (at most `_MAX_BATCH`) in one `BEGIN IMMEDIATE ... COMMIT`,
in queue order, so each result is what running the calls one by one would give. A caller's
future resolves only once the transaction that holds its call has committed: a worker acks
right after `complete()`, and a redelivery after a crash must find the key done. A call that
fails is undone alone and its caller alone gets the error (see `_run_batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from framework.idempotency.sqlite_open import open_wal
from framework.idempotency.store import ClaimResult

Clock = Callable[[], float]
_T = TypeVar("_T")
#: a call for the store's thread, run inside its batch's transaction
_Operation = Callable[[sqlite3.Connection], Any]
#: an operation and its caller's future
_Queued = tuple[_Operation, asyncio.Future[Any]]
#: what the thread takes from its queue: a call, or (None, future of close()): stop
_Item = tuple[_Operation | None, asyncio.Future[Any]]
#: a future, whether its operation succeeded, and the result or the exception
_Outcome = tuple[asyncio.Future[Any], bool, Any]

# Bounds how long one transaction holds SQLite's write lock (other processes wait for it) and
# how long the first call of a batch waits for the last.
_MAX_BATCH = 512

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
# fenced: only if the claim still holds it, or nobody holds it any more (expired, purged)
_COMPLETE_FENCED = """
INSERT INTO fw_idempotency (scope, key, done, token, expires_at) VALUES (?, ?, 1, NULL, ?)
ON CONFLICT (scope, key) DO UPDATE SET done = 1, token = NULL, expires_at = excluded.expires_at
    WHERE (fw_idempotency.done = 0 AND fw_idempotency.token = ?)
        OR fw_idempotency.expires_at <= ?
"""
_RENEW = """
UPDATE fw_idempotency SET expires_at = ? WHERE scope = ? AND key = ? AND done = 0 AND token = ?
"""
_RELEASE = "DELETE FROM fw_idempotency WHERE scope = ? AND key = ? AND done = 0 AND token = ?"
_PURGE = "DELETE FROM fw_idempotency WHERE expires_at <= ?"


class SqliteStore:
    """Keys in one table of a SQLite file (WAL); expired rows are purged now and then."""

    def __init__(
        self, path: str, *, clock: Clock = time.time, purge_interval: float = 60.0
    ) -> None:
        self._path = path
        self._clock = clock
        self._purge_interval = purge_interval
        self._next_purge = 0.0  # read and written on the store's thread only
        # lease tokens of this process's claims, so release() drops only its own lease
        self._tokens: dict[tuple[str, str], str] = {}
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None  # resolved once the thread is done
        self._closed = True  # until open() has connected

    @classmethod
    async def open(
        cls, path: str, *, clock: Clock = time.time, purge_interval: float = 60.0
    ) -> SqliteStore:
        """Open (creating if missing) the database at `path`; `:memory:` is process-local."""
        store = cls(path, clock=clock, purge_interval=purge_interval)
        await store._start()
        return store

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        mine = token or uuid.uuid4().hex
        result: ClaimResult = await self._call(lambda db: self._claim(db, scope, key, mine, lease))
        if result is ClaimResult.CLAIMED and token is None:
            self._tokens[(scope, key)] = mine
        return result

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        changed: int = await self._call(
            lambda db: _execute(db, _RENEW, (self._clock() + lease, scope, key, token))
        )
        return changed == 1

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
            await self._call(
                lambda db: _execute(db, _COMPLETE, (scope, key, self._clock() + retention))
            )
            return None

        def fenced(db: sqlite3.Connection) -> int:
            now = self._clock()
            return _execute(db, _COMPLETE_FENCED, (scope, key, now + retention, token, now))

        return bool(await self._call(fenced) == 1)

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._call(lambda db: _execute(db, _RELEASE, (scope, key, mine)))

    async def close(self) -> None:
        """Run what is already queued, then close the connection and join the thread."""
        thread = self._thread
        if thread is None:
            return
        if self._stopped is None:
            self._closed = True  # later calls raise: nothing is queued behind the stop
            self._stopped = self._stop()
        await asyncio.shield(self._stopped)  # the thread has closed the connection
        thread.join()
        self._thread = None

    async def purge(self) -> int:
        """Delete every expired row now; returns how many went."""
        deleted: int = await self._call(lambda db: _execute(db, _PURGE, (self._clock(),)))
        return deleted

    # ---- on the event loop ------------------------------------------------------------

    async def _start(self) -> None:
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        thread = threading.Thread(
            target=self._serve, args=(connected,), name="fw-sqlite", daemon=True
        )  # daemon: a store never closed cannot block exit
        thread.start()
        try:
            await connected
        except asyncio.CancelledError:
            self._stop()  # the thread ends by itself once it has connected (or failed to)
            raise
        except BaseException:
            thread.join()  # it failed to connect: it has returned, or is about to
            raise
        self._thread = thread
        self._closed = False

    def _stop(self) -> asyncio.Future[None]:
        """Queue the thread's stop; the future resolves once it has closed the connection."""
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((None, stopped))
        return stopped

    async def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Queue `operation` and wait until the transaction that ran it has committed."""
        if self._closed:
            raise RuntimeError(f"SQLite idempotency store {self._path!r} is closed")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.put((operation, future))
        return await future

    # ---- on the store's thread ------------------------------------------------------

    def _serve(self, connected: asyncio.Future[None]) -> None:
        """The thread: connect, then run batches until told to stop; close on the way out."""
        try:
            db = self._connect()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
            _resolve_from_thread([(connected, False, exc)])
            return
        _resolve_from_thread([(connected, True, None)])
        stopped = None
        try:
            while stopped is None:
                batch, stopped = self._take_batch()
                if batch:
                    _resolve_from_thread(self._run_batch(db, batch))
        finally:
            db.close()
            if stopped is not None:
                _resolve_from_thread([(stopped, True, None)])

    def _take_batch(self) -> tuple[list[_Queued], asyncio.Future[Any] | None]:
        """Wait for a call, take what else is pending (up to _MAX_BATCH); and a stop if one came.

        Blocking on the queue, not polling: an idle store costs no CPU.
        """
        batch: list[_Queued] = []
        operation, future = self._queue.get()
        while operation is not None:
            batch.append((operation, future))
            if len(batch) == _MAX_BATCH:
                return batch, None
            try:
                operation, future = self._queue.get_nowait()
            except queue.Empty:
                return batch, None
        return batch, future

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Queued]) -> list[_Outcome]:
        """One transaction for the batch; outcomes in queue order.

        Savepoints would isolate each operation but cost a third of the time per message, so
        the batch first runs without; only if an operation fails is the transaction rolled
        back and the batch redone with a savepoint per operation. Operations change nothing
        but the database (and when to purge next), so redoing them is safe. If the
        transaction itself fails (BEGIN or COMMIT: another process held the lock beyond the
        timeout, disk full), all of it was undone, so every caller gets that error.
        """
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [(future, True, operation(db)) for operation, future in batch]
            except Exception:  # noqa: BLE001 - then each operation on its own
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                outcomes = [_isolated(db, operation, future) for operation, future in batch]
            db.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return [(future, False, exc) for _, future in batch]
        return outcomes

    def _connect(self) -> sqlite3.Connection:
        # timeout: how long BEGIN IMMEDIATE waits while another process holds the lock.
        return open_wal(self._path, lambda db: db.execute(_SCHEMA), timeout=30.0)

    def _claim(
        self, db: sqlite3.Connection, scope: str, key: str, token: str, lease: float
    ) -> ClaimResult:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            db.execute(_PURGE, (now,))
        if _execute(db, _CLAIM, (scope, key, token, now + lease, now)) == 1:
            return ClaimResult.CLAIMED
        row = db.execute(_STATE, (scope, key)).fetchone()
        # No row: it expired and was purged by another process in between; it is free. (Only
        # possible outside a write transaction; kept so the claim never depends on that.)
        if row is None:
            return self._claim(db, scope, key, token, lease)
        return ClaimResult.DONE if row[0] else ClaimResult.BUSY


def _isolated(
    db: sqlite3.Connection, operation: _Operation, future: asyncio.Future[Any]
) -> _Outcome:
    """Run one operation in a savepoint: if it fails, only its own changes are undone."""
    db.execute("SAVEPOINT op")
    try:
        outcome: _Outcome = (future, True, operation(db))
    except Exception as exc:
        if not db.in_transaction:  # SQLite gave up the whole transaction (I/O error, full)
            raise
        db.execute("ROLLBACK TO op")
        outcome = (future, False, exc)
    db.execute("RELEASE op")
    return outcome


def _execute(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    """Run one statement; how many rows it changed."""
    return db.execute(sql, params).rowcount


def _resolve_from_thread(outcomes: list[_Outcome]) -> None:
    """Hand outcomes to their futures' event loops: one wake-up per loop, not per future."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve, mine)


def _resolve(outcomes: list[_Outcome]) -> None:
    for future, succeeded, value in outcomes:
        if future.done():  # the caller was cancelled; the operation still ran
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)
