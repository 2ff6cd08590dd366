"""The accounting ledger: a SQLite file shared by the test process and worker subprocesses.

The test process records every send it attempts and how it ended; workers record every
handling. Effects live outside the workers, so a worker killed at any moment cannot hide
a duplicate or a loss:

- `handlings`: one row per execution of the handler's effect (raw; duplicates visible),
- `effects`: the key as PRIMARY KEY, `INSERT OR IGNORE` (the effect "exactly once"),
- `sends`: one row per key the test tried to send, with its final status.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS handlings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sends (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    attempted_at REAL,
    settled_at REAL
);
"""

# sends.status values
PENDING = "pending"  # attempted, outcome not known yet (or never confirmed)
CONFIRMED = "confirmed"  # bus.send returned: the broker confirmed it
REJECTED = "rejected"  # the broker refused it (Overloaded): it must never be handled
FAILED = "failed"  # gave up after errors (PublishTimeout...): may or may not be stored


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, waiting for other writers instead of failing."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class EffectRecorder:
    """Used inside the worker: records one handling (raw row + idempotent effect)."""

    def __init__(self, path: Path | str, pid: int) -> None:
        self._conn = connect(path)
        self._pid = pid

    def record(self, key: str) -> None:
        now = time.time()
        with self._conn:  # one transaction: both rows or neither
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO handlings (key, pid, at) VALUES (?, ?, ?)", (key, self._pid, now)
            )
            self._conn.execute(
                "INSERT OR IGNORE INTO effects (key, pid, at) VALUES (?, ?, ?)",
                (key, self._pid, now),
            )


@dataclass
class DeadLetter:
    """One message found in the DLQ: its key and the reason it carries."""

    key: str
    reason: str


@dataclass
class Accounting:
    """The figures of one run and the violations of the invariant (empty = it holds)."""

    attempted: int = 0
    confirmed: int = 0
    rejected: int = 0
    failed: int = 0
    handled_once: int = 0
    raw_handlings: int = 0
    duplicates_absorbed: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    rejected_but_handled: list[str] = field(default_factory=list)
    handled_and_dead: list[str] = field(default_factory=list)
    dead_without_reason: list[str] = field(default_factory=list)
    left_in_queues: int = 0

    def violations(self) -> list[str]:
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost)} confirmed sends lost: {self.lost[:10]}")
        if self.phantom:
            problems.append(f"{len(self.phantom)} handled but never sent: {self.phantom[:10]}")
        if self.rejected_but_handled:
            problems.append(
                f"{len(self.rejected_but_handled)} refused by the broker yet handled: "
                f"{self.rejected_but_handled[:10]}"
            )
        if self.dead_without_reason:
            problems.append(f"DLQ messages without a reason: {self.dead_without_reason[:10]}")
        if self.left_in_queues:
            problems.append(f"{self.left_in_queues} messages left in the queues (unacked?)")
        return problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "failed": self.failed,
            "handled_once": self.handled_once,
            "raw_handlings": self.raw_handlings,
            "duplicates_absorbed": self.duplicates_absorbed,
            "dead_lettered": dict(self.dead_lettered),
            "lost": len(self.lost),
            "phantom": len(self.phantom),
            "handled_and_dead": len(self.handled_and_dead),
            "left_in_queues": self.left_in_queues,
        }


class Ledger:
    """The test-process side: sends, and reading back what the workers did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    # ---- sends -------------------------------------------------------------------------

    def attempt(self, key: str, kind: str = "ok") -> None:
        """Record a key before its first send (so anything handled was at least attempted)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO sends (key, kind, status, attempted_at) VALUES (?, ?, ?, ?)",
            (key, kind, PENDING, time.time()),
        )

    def settle(self, key: str, status: str, tries: int, error: str | None = None) -> None:
        self._conn.execute(
            "UPDATE sends SET status = ?, tries = ?, error = ?, settled_at = ? WHERE key = ?",
            (status, tries, error, time.time(), key),
        )

    def sends(self, status: str | None = None) -> dict[str, str]:
        """key -> kind, for every send (with `status`, if given)."""
        if status is None:
            rows = self._conn.execute("SELECT key, kind FROM sends")
        else:
            rows = self._conn.execute("SELECT key, kind FROM sends WHERE status = ?", (status,))
        return dict(rows.fetchall())

    # ---- effects -------------------------------------------------------------------------

    def effects(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT key FROM effects")}

    def effect_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0])

    def raw_handlings(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM handlings").fetchone()[0])

    def handlings_per_key(self) -> Counter[str]:
        return Counter(dict(self._conn.execute("SELECT key, COUNT(*) FROM handlings GROUP BY key")))

    def first_handling_after(self, moment: float) -> float | None:
        row = self._conn.execute("SELECT MIN(at) FROM handlings WHERE at > ?", (moment,))
        value = row.fetchone()[0]
        return None if value is None else float(value)

    def recovered_after(self, moment: float) -> float | None:
        """When the pipeline worked end to end again after `moment`: the first handling of a
        message first sent after `moment` (in-flight work finishing does not count).
        None if that never happened."""
        row = self._conn.execute(
            "SELECT MIN(h.at) FROM handlings h JOIN sends s ON s.key = h.key "
            "WHERE s.attempted_at > ?",
            (moment,),
        )
        value = row.fetchone()[0]
        return None if value is None else float(value)

    def handlings_between(self, start: float, end: float) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM handlings WHERE at >= ? AND at < ?", (start, end)
        )
        return int(row.fetchone()[0])

    # ---- the invariant ---------------------------------------------------------------------

    def account(self, dead: Iterable[DeadLetter], left_in_queues: int) -> Accounting:
        """Check: every confirmed send handled once in effect or dead-lettered with a reason;
        nothing handled that was not sent; nothing refused by the broker handled."""
        sends = self.sends()
        status = dict(self._conn.execute("SELECT key, status FROM sends").fetchall())
        confirmed = {k for k, s in status.items() if s == CONFIRMED}
        rejected = {k for k, s in status.items() if s == REJECTED}
        effects = self.effects()
        dead_list = list(dead)
        dead_keys = {d.key for d in dead_list}
        reasons: Counter[str] = Counter(d.reason or "(none)" for d in dead_list)
        raw = self.raw_handlings()
        return Accounting(
            attempted=len(sends),
            confirmed=len(confirmed),
            rejected=len(rejected),
            failed=sum(1 for s in status.values() if s == FAILED),
            handled_once=len(effects),
            raw_handlings=raw,
            duplicates_absorbed=raw - len(effects),
            dead_lettered=dict(sorted(reasons.items())),
            lost=sorted(confirmed - effects - dead_keys),
            phantom=sorted((effects | dead_keys) - set(sends)),
            rejected_but_handled=sorted(rejected & (effects | dead_keys)),
            handled_and_dead=sorted(effects & dead_keys),
            dead_without_reason=sorted(d.key for d in dead_list if not d.reason),
            left_in_queues=left_in_queues,
        )


def dead_letter_reason(headers: Mapping[str, Any]) -> str:
    """The one reason a DLQ message carries: `fw-reason`, else the broker's x-death reason."""
    reason = headers.get("fw-reason")
    if reason:
        return str(reason.decode() if isinstance(reason, bytes) else reason)
    deaths = headers.get("x-death") or []
    if deaths:
        value = deaths[0].get("reason", "")
        return str(value.decode() if isinstance(value, bytes) else value)
    return ""
