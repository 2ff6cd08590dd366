"""The service's database in SQLite: one connection on one thread, one transaction at a time.

Every statement runs on the database's own thread (the event loop never blocks on disk); an
asyncio lock gives each transaction the connection for its whole duration, so handlers in
one process take turns, and `BEGIN IMMEDIATE` makes other processes on the same file wait
(up to `busy_timeout`) instead of failing at commit. Claims by several relays are therefore
serialised by SQLite's write lock; a claim is a lease (`claimed_by`, `claimed_until`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from framework.idempotency.sqlite_open import open_wal
from framework.outbox.database import DatabaseUnavailable
from framework.outbox.rows import ClaimedRow, NewRow, envelope_from_json, envelope_json

_T = TypeVar("_T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fw_inbox (
        queue TEXT NOT NULL,
        key TEXT NOT NULL,
        handled_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (queue, key))""",
    "CREATE INDEX IF NOT EXISTS fw_inbox_expiry ON fw_inbox (expires_at)",
    """CREATE TABLE IF NOT EXISTS fw_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        message_key TEXT NOT NULL,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        mandatory INTEGER NOT NULL,
        envelope TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at REAL NOT NULL,
        claimed_by TEXT,
        claimed_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        sent_at REAL)""",
    "CREATE INDEX IF NOT EXISTS fw_outbox_unsent ON fw_outbox (stream, id) WHERE sent_at IS NULL",
    "CREATE INDEX IF NOT EXISTS fw_outbox_sent ON fw_outbox (sent_at) WHERE sent_at IS NOT NULL",
)
_INBOX_INSERT = (
    "INSERT INTO fw_inbox (queue, key, handled_at, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (queue, key) DO NOTHING"
)
_SEEN = "SELECT 1 FROM fw_inbox WHERE queue = ? AND key = ?"
_OUTBOX_INSERT = """INSERT INTO fw_outbox (stream, message_key, exchange, routing_key, mandatory,
    envelope, body, created_at, claimed_by, claimed_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# Oldest free rows, skipping any whose stream has an earlier unsent row someone holds.
_CANDIDATES = """SELECT id FROM fw_outbox AS o
    WHERE o.sent_at IS NULL AND (o.claimed_until IS NULL OR o.claimed_until <= :now)
      AND NOT EXISTS (SELECT 1 FROM fw_outbox AS p
          WHERE p.stream = o.stream AND p.id < o.id AND p.sent_at IS NULL
            AND p.claimed_until > :now)
    ORDER BY o.id LIMIT :limit"""
_CLAIM = """UPDATE fw_outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1
    WHERE id = ? RETURNING id, stream, exchange, routing_key, mandatory, envelope, body,
    created_at, attempts"""
_SENT = "UPDATE fw_outbox SET sent_at = ?, claimed_until = NULL WHERE id = ? AND claimed_by = ?"
_RELEASE = """UPDATE fw_outbox SET claimed_by = NULL, claimed_until = ?, last_error = ?
    WHERE id = ? AND claimed_by = ? AND sent_at IS NULL"""
_PURGE_INBOX = """DELETE FROM fw_inbox WHERE rowid IN (
    SELECT rowid FROM fw_inbox WHERE expires_at <= ? LIMIT ?)"""
_PURGE_SENT = """DELETE FROM fw_outbox WHERE id IN (
    SELECT id FROM fw_outbox WHERE sent_at IS NOT NULL AND sent_at <= ? LIMIT ?)"""
_BACKLOG = "SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL"

# Messages of sqlite3.OperationalError that mean "not now" rather than "wrong SQL".
_UNAVAILABLE = ("locked", "busy", "disk i/o", "unable to open", "readonly", "full")


def is_unavailable(exc: BaseException) -> bool:
    """True for SQLite errors that a later attempt may not hit (lock held, disk trouble)."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in _UNAVAILABLE
    )


class SqliteConnection:
    """The transaction's connection: statements run on the database's thread."""

    def __init__(self, transaction: _Transaction) -> None:
        self._transaction = transaction

    async def execute(self, sql: str, *params: Any) -> int:
        """Run one statement; how many rows it changed."""
        return await self._transaction.run(lambda db: db.execute(sql, params).rowcount)

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """Run one query; all its rows (tuples)."""
        return await self._transaction.run(lambda db: db.execute(sql, params).fetchall())

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work(connection)` on the database's thread, inside this transaction."""
        return await self._transaction.run(work)


class _Transaction:
    """One transaction. Each step is a trip to the database's thread, so `BEGIN` rides
    along with the first statement and the outbox rows with the `COMMIT`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.connection = SqliteConnection(self)
        self._database = database
        self.begun = False
        self._staged: list[tuple[Any, ...]] = []
        self.staged_ids: list[int] = []

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self.begun:
            return await self._database.run(work)
        self.begun = True

        def begin_then(db: sqlite3.Connection) -> _T:
            _begin(db)
            return work(db)

        return await self._database.run(begin_then)

    async def execute(self, sql: str, *params: Any) -> int:
        return await self.connection.execute(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        return await self.connection.fetch(sql, *params)

    async def insert_inbox(self, queue: str, key: str, now: float, expires_at: float) -> bool:
        return await self.execute(_INBOX_INSERT, queue, key, now, expires_at) == 1

    def stage_outbox(
        self, rows: Sequence[NewRow], owner: str | None, now: float, claimed_until: float | None
    ) -> None:
        self._staged.extend(
            (
                r.stream,
                r.key,
                r.exchange,
                r.routing_key,
                int(r.mandatory),
                envelope_json(r.envelope),
                r.envelope.body,
                now,
                owner,
                claimed_until,
            )
            for r in rows
        )

    def commit(self, db: sqlite3.Connection) -> None:
        """On the thread: (BEGIN,) the staged outbox rows, COMMIT -- one trip."""
        if not self.begun:
            _begin(db)
        self.staged_ids = [
            int(db.execute(_OUTBOX_INSERT, values).lastrowid or 0) for values in self._staged
        ]
        db.execute("COMMIT")


class SqliteDatabase:
    """A SQLite file (WAL) holding the inbox, the outbox and the service's own tables."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fw-outbox-db")
        self._lock = asyncio.Lock()
        self._db: sqlite3.Connection | None = None
        # Reads of committed rows (the inbox lookup before every handler, the backlog) go to
        # a second connection on a thread of its own: WAL readers never wait for the writer.
        # An in-memory database exists only on its one connection: reads use that one.
        self._shared = path == ":memory:" or path.startswith("file::memory:")
        self._reader_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="fw-outbox-read"
        )
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteDatabase:
        """Open (creating if missing) the file and the framework's tables."""
        database = cls(path, busy_timeout=busy_timeout)
        try:
            await database._call(database._connect)
            if not database._shared:
                await database._read(lambda db: None)
        except BaseException:
            await database.close()
            raise
        return database

    @property
    def masked_url(self) -> str:
        return f"sqlite:///{self._path}"

    def _connect(self) -> None:
        def create_schema(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        self._db = open_wal(self._path, create_schema, timeout=self._busy_timeout)

    async def _call(self, work: Callable[[], _T], executor: Executor | None = None) -> _T:
        """`work()` on the writer's thread (or `executor`'s); a database that cannot be
        reached is a `DatabaseUnavailable`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                executor or self._executor, work
            )
        except sqlite3.Error as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailable(f"SQLite database {self._path!r}: {exc}") from exc
            raise

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work(connection)` on the database's thread (callers hold the lock)."""
        db = self._db
        if db is None:
            raise RuntimeError(f"SQLite database {self._path!r} is closed")
        return await self._call(lambda: work(db))

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[_Transaction]:
        async with self._lock:
            transaction = _Transaction(self)
            try:
                yield transaction
            except BaseException:
                if transaction.begun:
                    await asyncio.shield(self._rollback())
                raise
            try:
                await asyncio.shield(self.run(transaction.commit))
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        def rollback(db: sqlite3.Connection) -> None:
            if db.in_transaction:
                db.execute("ROLLBACK")

        await self.run(rollback)

    async def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self.begin() as tx:
            return await tx.connection.run(work)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` on the reader connection (committed data only), or for an in-memory
        database on the writer, between transactions."""
        if self._shared:
            async with self._lock:
                return await self.run(work)

        def read() -> _T:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self._path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout,
                )
            return work(self._reader)

        return await self._call(read, self._reader_executor)

    async def seen(self, queue: str, key: str) -> bool:
        return await self._read(lambda db: db.execute(_SEEN, (queue, key)).fetchone() is not None)

    async def claim(self, owner: str, limit: int, now: float, lease: float) -> list[ClaimedRow]:
        def claim(db: sqlite3.Connection) -> list[ClaimedRow]:
            ids = [r[0] for r in db.execute(_CANDIDATES, {"now": now, "limit": limit}).fetchall()]
            return [_claimed(db.execute(_CLAIM, (owner, now + lease, i)).fetchone()) for i in ids]

        return await self._write(claim)

    async def mark_sent(self, owner: str, ids: Sequence[int], now: float) -> None:
        await self._write(lambda db: db.executemany(_SENT, [(now, i, owner) for i in ids]))

    async def release(self, owner: str, ids: Sequence[int], retry_at: float, error: str) -> None:
        await self._write(
            lambda db: db.executemany(_RELEASE, [(retry_at, error[:500], i, owner) for i in ids])
        )

    async def purge(self, now: float, sent_before: float, batch: int) -> int:
        def purge(db: sqlite3.Connection) -> int:
            inbox = db.execute(_PURGE_INBOX, (now, batch)).rowcount
            return int(inbox + db.execute(_PURGE_SENT, (sent_before, batch)).rowcount)

        return await self._write(purge)

    async def backlog(self) -> int:
        return int(await self._read(lambda db: db.execute(_BACKLOG).fetchone()[0]))

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await self._call(db.close)
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader_executor, reader.close)
        self._executor.shutdown(wait=True)
        self._reader_executor.shutdown(wait=True)


def _begin(db: sqlite3.Connection) -> None:
    # A transaction still open here was abandoned by a cancelled caller whose rollback has
    # not run yet (it is queued behind us): undo it rather than fail "within a transaction".
    if db.in_transaction:
        db.execute("ROLLBACK")
    db.execute("BEGIN IMMEDIATE")


def _claimed(row: tuple[Any, ...]) -> ClaimedRow:
    row_id, stream, exchange, routing_key, mandatory, envelope, body, created, attempts = row
    return ClaimedRow(
        id=row_id,
        stream=stream,
        exchange=exchange,
        routing_key=routing_key,
        mandatory=bool(mandatory),
        envelope=envelope_from_json(envelope, body),
        created_at=created,
        attempts=attempts,
    )
