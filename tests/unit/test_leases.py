"""Lease renewal, fencing and tracked threads of a delivery's claim (in-process stores)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from framework.idempotency import ClaimResult, MemoryStore
from framework.idempotency.leases import (
    HeldLease,
    LeaseKeeper,
    current_lease,
    install_tracking_executor,
    new_token,
)
from framework.idempotency.sqlite import SqliteStore


def test_tokens_are_unique() -> None:
    assert len({new_token() for _ in range(1000)}) == 1000


async def test_keeper_renews_held_leases() -> None:
    """A held lease outlives its first expiry; once dropped it lapses."""
    store = MemoryStore()
    keeper = LeaseKeeper(store, interval=0.05)
    token = new_token()
    await store.claim("q", "k", 0.2, token)
    held = HeldLease("q", "k", token, 0.2)
    keeper.hold(held)
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.5)
        assert await store.claim("q", "k", 0.2, new_token()) is ClaimResult.BUSY
        keeper.drop(held)
        await asyncio.sleep(0.3)
        assert await store.claim("q", "k", 0.2, new_token()) is ClaimResult.CLAIMED
    finally:
        task.cancel()


async def test_keeper_marks_a_taken_over_lease_lost() -> None:
    """A renewal that finds another holder marks the lease lost (and stops renewing it)."""
    store = MemoryStore()
    keeper = LeaseKeeper(store, interval=0.05)
    token = new_token()
    await store.claim("q", "k", 0.05, token)
    await asyncio.sleep(0.1)
    assert await store.claim("q", "k", 30, "other") is ClaimResult.CLAIMED
    held = HeldLease("q", "k", token, 0.05)
    keeper.hold(held)
    task = asyncio.create_task(keeper.run())
    try:
        while not held.lost:  # noqa: ASYNC110 - the keeper's next round flags it
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert await store.complete("q", "k", 60, token) is False


async def test_renewal_thread_keeps_the_lease_while_the_loop_is_blocked(tmp_path: Path) -> None:
    """With a shared store the keeper renews from its own thread: blocking this loop past
    the lease does not free the key for another process."""
    path = str(tmp_path / "idem.db")
    store = await SqliteStore.open(path)
    other = await SqliteStore.open(path)

    async def opener() -> SqliteStore:
        return await SqliteStore.open(path)

    keeper = LeaseKeeper(store, interval=0.1, opener=opener)
    token = new_token()
    await store.claim("q", "k", 0.3, token)
    keeper.hold(HeldLease("q", "k", token, 0.3))
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.05)
        time.sleep(1.0)  # noqa: ASYNC251 - a handler blocking the loop past the lease
        assert await other.claim("q", "k", 0.3, "other") is ClaimResult.BUSY
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await other.close()


async def test_to_thread_is_tracked_for_the_current_delivery() -> None:
    """Threads started with asyncio.to_thread while a lease is current are recorded on it."""
    install_tracking_executor(asyncio.get_running_loop())
    held = HeldLease("q", "k", new_token(), 5)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def work() -> None:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)

    reset = current_lease.set(held)
    try:
        task = asyncio.ensure_future(asyncio.to_thread(work))
    finally:
        current_lease.reset(reset)
    await asyncio.sleep(0.05)
    task.cancel()  # what a timeout does: the coroutine stops, the thread does not
    assert held.threads_running()
    release.set()
    assert await held.threads_finished() is True
    assert not held.threads_running()


async def test_claim_with_a_lost_answer_is_released_later() -> None:
    """A claim the store took although its answer was lost is released with its own token
    on the keeper's next round (not left to block the key until the lease expires)."""
    store = MemoryStore()
    keeper = LeaseKeeper(store, interval=0.05)
    token = new_token()
    await store.claim("q", "k", 30, token)  # taken by the store; the worker saw a timeout
    keeper.orphan("q", "k", token)
    await store.claim("q", "other", 30, "someone-else")
    keeper.orphan("q", "other", "a-token-that-never-held-it")
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    assert await store.claim("q", "k", 30, new_token()) is ClaimResult.CLAIMED
    assert await store.claim("q", "other", 30, new_token()) is ClaimResult.BUSY
