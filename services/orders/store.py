"""The orders service's own database: one SQLite table, insert-once by order id.

The worker writes through `insert`, on the connection of its `ctx.transaction()` (the same
SQLite file as its inbox and outbox), so the order and the messages it causes commit
together; `OrderStore` reads (and writes, outside handlers) the same file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, "
    "customer_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, "
    "status TEXT NOT NULL, placed_at REAL NOT NULL)"
)


def insert(db: sqlite3.Connection, order_id: str, customer_id: str, amount_cents: int) -> bool:
    """Store a new order as `placed` on `db` (inside the caller's transaction); False if
    it was already there."""
    db.execute(SCHEMA)
    cursor = db.execute(
        "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, 'placed', ?)",
        (order_id, customer_id, amount_cents, time.time()),
    )
    return cursor.rowcount == 1


class OrderStore:
    """Orders by id. `add` is idempotent: placing the same order twice stores it once."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def add(self, order_id: str, customer_id: str, amount_cents: int) -> bool:
        """Store a new order as `placed`; False if it was already there."""
        return insert(self._db, order_id, customer_id, amount_cents)

    def status(self, order_id: str) -> str | None:
        found = self._db.execute(
            "SELECT status FROM orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        return None if found is None else str(found[0])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def close(self) -> None:
        self._db.close()
