"""Open a SQLite file in WAL mode, safely while other processes open it too.

Switching a fresh file to WAL and creating the schema need SQLite's exclusive locks, and
SQLite does not always wait for them: where waiting could deadlock (a reader that wants to
write, a connection recovering the WAL) it answers "database is locked" at once, whatever
`timeout` says. Two replicas that start together on a new file hit it (seen in CI, about one
start in a hundred). So the whole opening sequence is retried, with jittered waits, until
`timeout` has passed; any other error, or a lock that outlasts the timeout, is raised.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable

#: set-up run on every new connection (schema, pragmas); it must be safe to run again
Setup = Callable[[sqlite3.Connection], object]


def is_lock_contention(exc: sqlite3.Error) -> bool:
    """Another connection holds a lock this one needs: worth trying again."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def open_wal(
    path: str,
    setup: Setup,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> sqlite3.Connection:
    """A connection to `path` in WAL mode with `setup` run on it, in autocommit mode
    (`isolation_level=None`: callers begin their own transactions)."""
    deadline = clock() + timeout
    pause = 0.005
    while True:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            setup(db)
        except sqlite3.Error as exc:
            db.close()
            wait = pause * random.uniform(0.5, 1.5)  # jitter: replicas do not retry in step
            if not is_lock_contention(exc) or clock() + wait > deadline:
                raise
        except BaseException:
            db.close()
            raise
        else:
            return db
        sleep(wait)
        pause = min(pause * 2, 0.25)
