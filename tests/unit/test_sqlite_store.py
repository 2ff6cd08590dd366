"""The SQLite store's group commit: batched calls give sequential results, durably.

Calls are queued and run in batches, one transaction each, on the store's thread. The tests
hold that thread (a clock that blocks) to force calls into one batch, and compare results
under concurrency with a model of running the calls one by one in queue order.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from framework.idempotency import ClaimResult
from framework.idempotency.sqlite import SqliteStore

CLAIMED, BUSY, DONE = ClaimResult.CLAIMED, ClaimResult.BUSY, ClaimResult.DONE
NOW = 1_000_000.0


class GatedClock:
    """A fixed clock that, once armed, holds the store's thread at its next reading."""

    def __init__(self) -> None:
        self.armed = False
        self.waiting = threading.Event()  # the thread is held
        self.gate = threading.Event()

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            self.waiting.set()
            self.gate.wait(10)
        return NOW

    async def hold(self, store: SqliteStore) -> asyncio.Task[int]:
        """Hold the thread inside a call; what is queued meanwhile forms the next batch."""
        self.armed = True
        self.gate.clear()
        held = asyncio.ensure_future(store.purge())
        assert await asyncio.to_thread(self.waiting.wait, 10)
        self.waiting.clear()
        return held


class RecordingStore(SqliteStore):
    """Records each batch's size; claims of key "bad" fail after changing the table."""

    batches: list[int]

    def _run_batch(self, db: sqlite3.Connection, batch: list[Any]) -> list[Any]:
        self.batches.append(len(batch))
        return super()._run_batch(db, batch)

    def _claim(
        self, db: sqlite3.Connection, scope: str, key: str, token: str, lease: float
    ) -> ClaimResult:
        result = super()._claim(db, scope, key, token, lease)
        if key == "bad":
            raise ValueError("injected")
        if key == "abort":  # as if SQLite gave up the transaction (I/O error)
            db.execute("ROLLBACK")
            raise sqlite3.OperationalError("injected abort")
        return result


async def open_recording(path: Path, clock: GatedClock) -> RecordingStore:
    RecordingStore.batches = []
    store = await RecordingStore.open(str(path), clock=clock)
    assert isinstance(store, RecordingStore)
    return store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "idempotency.db"


async def test_one_batch_gives_sequential_results(db_path: Path) -> None:
    """Claim, claim, complete, claim of one key in one transaction: claimed, busy, done."""
    clock = GatedClock()
    store = await open_recording(db_path, clock)
    held = await clock.hold(store)
    calls = asyncio.gather(
        store.claim("q", "k", 30),
        store.claim("q", "k", 30),
        store.complete("q", "k", 60),
        store.claim("q", "k", 30),
        store.claim("q", "other", 30),
    )
    await asyncio.sleep(0)  # the calls' tasks run up to their wait: all are queued
    clock.gate.set()
    assert list(await calls) == [CLAIMED, BUSY, None, DONE, CLAIMED]
    await held
    assert store.batches[-1] == 5
    await store.close()


async def test_failing_call_fails_alone(db_path: Path) -> None:
    """A call that raises mid-batch is undone alone; the others run once, in order."""
    clock = GatedClock()
    store = await open_recording(db_path, clock)
    held = await clock.hold(store)
    calls = asyncio.gather(
        store.claim("q", "a", 30),
        store.claim("q", "bad", 30),
        store.claim("q", "a", 30),
        store.complete("q", "a", 60),
        store.claim("q", "a", 30),
        return_exceptions=True,
    )
    await asyncio.sleep(0)  # the calls' tasks run up to their wait: all are queued
    clock.gate.set()
    a1, bad, a2, completed, a3 = await calls
    await held
    assert isinstance(bad, ValueError)
    assert (a1, a2, completed, a3) == (CLAIMED, BUSY, None, DONE)
    assert store.batches[-1] == 5
    await store.close()
    other = await SqliteStore.open(str(db_path), clock=lambda: NOW)
    assert await other.claim("q", "bad", 30) is CLAIMED  # its row was rolled back
    assert await other.claim("q", "a", 30) is DONE
    await other.close()


async def test_failed_transaction_fails_every_call(db_path: Path) -> None:
    """If the transaction itself is lost, no call in it succeeded: every caller gets the error."""
    clock = GatedClock()
    store = await open_recording(db_path, clock)
    held = await clock.hold(store)
    calls = asyncio.gather(
        store.claim("q", "a", 30),
        store.complete("q", "b", 60),
        store.claim("q", "abort", 30),
        return_exceptions=True,
    )
    await asyncio.sleep(0)  # the calls' tasks run up to their wait: all are queued
    clock.gate.set()
    results = await calls
    await held
    assert [type(r) for r in results] == [sqlite3.OperationalError] * 3
    assert await store.claim("q", "a", 30) is CLAIMED  # nothing of that batch was kept
    assert await store.claim("q", "b", 30) is CLAIMED
    await store.close()


class Reference:
    """Calls run one by one in queue order, and the store's own lease tokens, as a model."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[bool, float, int | None]] = {}  # key -> done, expiry, token
        self.tokens: dict[str, int] = {}  # this process's tokens, set when a claim returns
        self.claims: list[tuple[str, ClaimResult, int]] = []  # key, result, token

    def claim(self, key: str, lease: float) -> int:
        row = self.rows.get(key)
        token = len(self.claims)
        if row is not None and row[1] > NOW:
            result = DONE if row[0] else BUSY
        else:
            result = CLAIMED
            self.rows[key] = (False, NOW + lease, token)
        self.claims.append((key, result, token))
        return token

    def returned(self, claim: int) -> ClaimResult:
        key, result, token = self.claims[claim]
        if result is CLAIMED:
            self.tokens[key] = token
        return result

    def complete(self, key: str, retention: float) -> None:
        self.tokens.pop(key, None)
        self.rows[key] = (True, NOW + retention, None)

    def release(self, key: str) -> None:
        token = self.tokens.pop(key, None)
        row = self.rows.get(key)
        if token is not None and row is not None and not row[0] and row[2] == token:
            del self.rows[key]


async def test_concurrent_calls_match_sequential_reference(db_path: Path) -> None:
    """300 tasks claim, complete and release 24 keys: results are those of queue order.

    A call is queued synchronously when it starts, so logging just before each call gives
    the queue order; logging just after a claim returns gives when its lease token is kept.
    """
    rng = random.Random(7)
    store = await open_recording(db_path, GatedClock())
    log: list[tuple[Any, ...]] = []
    claims = itertools.count()

    async def worker() -> None:
        for _ in range(8):
            key = f"k{rng.randrange(24)}"
            lease = rng.choice([0.0, 30.0])  # a lease of 0 has expired at once
            claim = next(claims)
            log.append(("claim", key, lease))
            result = await store.claim("q", key, lease)
            log.append(("returned", claim, result))
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            if result is CLAIMED and rng.random() < 0.6:
                retention = rng.choice([0.0, 0.0, 60.0])  # a retention of 0 has expired at once
                log.append(("complete", key, retention))
                await store.complete("q", key, retention)
            elif result is CLAIMED or rng.random() < 0.1:  # and now and then a stray release
                log.append(("release", key))
                await store.release("q", key)

    await asyncio.gather(*(worker() for _ in range(300)))
    await store.close()

    reference = Reference()
    for event in log:
        if event[0] == "claim":
            reference.claim(event[1], event[2])
        elif event[0] == "returned":
            assert event[2] is reference.returned(event[1]), event
        elif event[0] == "complete":
            reference.complete(event[1], event[2])
        else:
            reference.release(event[1])
    results = Counter(result for _, result, _ in reference.claims)
    assert min(results[CLAIMED], results[BUSY], results[DONE]) > 150  # every case, often
    assert max(store.batches) > 50  # and the calls were batched
    assert max(store.batches) <= 512


async def test_idle_store_does_not_spin(db_path: Path) -> None:
    """An idle store's thread blocks on its queue: no CPU while nothing is asked."""
    store = await SqliteStore.open(str(db_path))
    await store.claim("q", "k", 30)
    before = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - before < 0.05
    await store.close()


def store_threads() -> int:
    return sum(thread.name == "fw-sqlite" for thread in threading.enumerate())


async def test_completed_keys_survive_reopen(db_path: Path) -> None:
    """Once complete() returns the key is committed: a reopened file finds it done."""
    store = await SqliteStore.open(str(db_path))
    keys = [f"k{n}" for n in range(600)]
    assert await asyncio.gather(*(store.claim("q", k, 30) for k in keys)) == [CLAIMED] * 600
    await asyncio.gather(*(store.complete("q", k, 60) for k in keys))
    await store.close()
    reopened = await SqliteStore.open(str(db_path))
    assert await asyncio.gather(*(reopened.claim("q", k, 30) for k in keys)) == [DONE] * 600
    await reopened.close()


async def test_close_runs_what_is_queued(db_path: Path) -> None:
    """close() lets queued calls finish (several batches' worth), then joins the thread."""
    threads = store_threads()
    clock = GatedClock()
    store = await open_recording(db_path, clock)
    held = await clock.hold(store)
    completes = asyncio.gather(*(store.complete("q", f"k{n}", 60) for n in range(1200)))
    await asyncio.sleep(0)  # every complete is queued behind the held call
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    clock.gate.set()
    await closing
    assert await completes == [None] * 1200
    await held
    assert store.batches[1:] == [512, 512, 176]
    assert store_threads() == threads
    reopened = await SqliteStore.open(str(db_path), clock=lambda: NOW)
    assert await reopened.claim("q", "k1199", 30) is DONE
    await reopened.close()


async def test_calls_after_close_raise(db_path: Path) -> None:
    """A closed store says so; closing again is harmless."""
    store = await SqliteStore.open(str(db_path))
    await store.claim("q", "k", 30)
    await store.close()
    await store.close()
    for call in (store.claim("q", "k", 30), store.complete("q", "k", 60), store.purge()):
        with pytest.raises(RuntimeError, match=r"store .*idempotency\.db' is closed"):
            await call
    with pytest.raises(RuntimeError, match="is closed"):
        await SqliteStore(str(db_path)).claim("q", "k", 30)  # never opened


async def test_failed_open_leaves_no_thread(tmp_path: Path) -> None:
    """A file that cannot be opened raises from open(), and its thread is gone."""
    threads = store_threads()
    with pytest.raises(sqlite3.OperationalError):
        await SqliteStore.open(str(tmp_path / "missing" / "idempotency.db"))
    assert store_threads() == threads


async def test_two_stores_on_one_file_exclude_each_other(db_path: Path) -> None:
    """Two stores on one file (two processes) racing for 200 keys: one claim wins each key."""
    first = await SqliteStore.open(str(db_path))
    second = await SqliteStore.open(str(db_path))
    keys = [f"k{n}" for n in range(200)]
    results = await asyncio.gather(
        *(store.claim("q", k, 30) for k in keys for store in (first, second))
    )
    winners = [(first, second)[i % 2] for i, r in enumerate(results) if r is CLAIMED]
    assert len(winners) == 200
    assert all(r is BUSY for r in results if r is not CLAIMED)
    await asyncio.gather(*(w.complete("q", k, 60) for w, k in zip(winners, keys, strict=True)))
    for store in (first, second):
        assert await asyncio.gather(*(store.claim("q", k, 30) for k in keys)) == [DONE] * 200
    await first.close()
    await second.close()


async def test_cancelled_open_stops_its_thread(db_path: Path) -> None:
    """An open() cancelled while connecting leaves no thread behind once it has connected."""
    threads = store_threads()
    opening = asyncio.ensure_future(SqliteStore.open(str(db_path)))
    await asyncio.sleep(0)  # the thread is started and connecting
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    for _ in range(500):
        if store_threads() == threads:
            break
        await asyncio.sleep(0.01)
    assert store_threads() == threads
