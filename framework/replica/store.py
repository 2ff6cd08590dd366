"""Where a replica keeps its rows: in memory or in SQLite; plus the pure rule for applying.

`decide_apply` says what an incoming event does to the stored row (no I/O). The stores are
synchronous and local (a dict, or one SQLite file in WAL mode), so they are fast enough to
call from a handler directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class ApplyResult(StrEnum):
    """What applying one event did."""

    APPLIED = "applied"  # new entity or newer version: stored
    CURRENT = "current"  # same version again (e.g. a snapshot re-publish): only freshness
    STALE = "stale"  # an older version arrived late: ignored
    DUPLICATE = "duplicate"  # the very event already applied (same event key): ignored


@dataclass(frozen=True, slots=True)
class Row:
    """One replicated entity: its id, version, the event key that set it, and its JSON."""

    entity_id: str
    version: int
    event_key: str
    data: str


def decide_apply(stored: Row | None, version: int, event_key: str) -> ApplyResult:
    """The rule: newer versions win; the same event or an older version changes nothing."""
    if stored is None:
        return ApplyResult.APPLIED
    if stored.event_key == event_key:
        return ApplyResult.DUPLICATE
    if version > stored.version:
        return ApplyResult.APPLIED
    if version == stored.version:
        return ApplyResult.CURRENT
    return ApplyResult.STALE


class ReplicaStore(Protocol):
    """Rows by entity id, plus the time of the last update (survives restarts if durable)."""

    def get(self, entity_id: str) -> Row | None: ...

    def put(self, row: Row, updated_at: float) -> None: ...

    def touch(self, updated_at: float) -> None: ...

    def last_updated(self) -> float | None: ...

    def rows(self) -> Iterator[Row]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class MemoryReplicaStore:
    """Rows in a dict: lost on restart (the owner's snapshot refills it)."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._updated: float | None = None

    def get(self, entity_id: str) -> Row | None:
        return self._rows.get(entity_id)

    def put(self, row: Row, updated_at: float) -> None:
        self._rows[row.entity_id] = row
        self._updated = updated_at

    def touch(self, updated_at: float) -> None:
        self._updated = updated_at

    def last_updated(self) -> float | None:
        return self._updated

    def rows(self) -> Iterator[Row]:
        return iter(list(self._rows.values()))

    def count(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        """Nothing to release."""


class SqliteReplicaStore:
    """Rows in one SQLite file (WAL): the replica and its last-updated time survive restarts."""

    def __init__(self, path: str | Path, table: str = "replica") -> None:
        if not table.isidentifier():
            raise ValueError(f"table name must be an identifier, got {table!r}")
        self._table = table
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (entity_id TEXT PRIMARY KEY, "
            "version INTEGER NOT NULL, event_key TEXT NOT NULL, data TEXT NOT NULL)"
        )
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table}_meta (name TEXT PRIMARY KEY, value REAL)"
        )

    def get(self, entity_id: str) -> Row | None:
        found = self._db.execute(
            f"SELECT entity_id, version, event_key, data FROM {self._table} "  # noqa: S608
            "WHERE entity_id = ?",
            (entity_id,),
        ).fetchone()
        return Row(*found) if found else None

    def put(self, row: Row, updated_at: float) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?, ?, ?)",  # noqa: S608
                (row.entity_id, row.version, row.event_key, row.data),
            )
            self._set_updated(updated_at)

    def touch(self, updated_at: float) -> None:
        self._set_updated(updated_at)

    def last_updated(self) -> float | None:
        found = self._db.execute(
            f"SELECT value FROM {self._table}_meta WHERE name = 'updated'"  # noqa: S608
        ).fetchone()
        return float(found[0]) if found else None

    def rows(self) -> Iterator[Row]:
        query = f"SELECT entity_id, version, event_key, data FROM {self._table}"  # noqa: S608
        return (Row(*r) for r in self._db.execute(query).fetchall())

    def count(self) -> int:
        query = f"SELECT COUNT(*) FROM {self._table}"  # noqa: S608
        return int(self._db.execute(query).fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _set_updated(self, at: float) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {self._table}_meta VALUES ('updated', ?)",  # noqa: S608
            (at,),
        )
