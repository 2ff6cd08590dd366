"""The in-memory store: bounded, evicts by age, expires on an injected clock."""

from __future__ import annotations

from framework.idempotency import ClaimResult, MemoryStore


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_oldest_key_is_evicted_when_full() -> None:
    """With max_keys reached, the oldest key goes first and is claimable again."""
    store = MemoryStore(max_keys=3, clock=FakeClock())
    for key in "abcd":
        await store.claim("q", key, 10)
        await store.complete("q", key, 100)
    assert len(store) == 3
    assert await store.claim("q", "a", 10) is ClaimResult.CLAIMED
    assert await store.claim("q", "d", 10) is ClaimResult.DONE


async def test_completing_refreshes_age() -> None:
    """A key completed later counts as newer than keys added after its claim."""
    store = MemoryStore(max_keys=2, clock=FakeClock())
    await store.claim("q", "a", 10)
    await store.claim("q", "b", 10)
    await store.complete("q", "a", 100)
    await store.claim("q", "c", 10)
    assert await store.claim("q", "a", 10) is ClaimResult.DONE
    assert await store.claim("q", "b", 10) is ClaimResult.CLAIMED


async def test_lease_expires_on_the_clock() -> None:
    """A lease is busy until the clock passes it, then claimable."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "k", 5)
    clock.now += 4.9
    assert await store.claim("q", "k", 5) is ClaimResult.BUSY
    clock.now += 0.2
    assert await store.claim("q", "k", 5) is ClaimResult.CLAIMED


async def test_done_expires_after_retention() -> None:
    """A done key is done until its retention passes, then forgotten."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "k", 5)
    await store.complete("q", "k", 60)
    clock.now += 59
    assert await store.claim("q", "k", 5) is ClaimResult.DONE
    clock.now += 2
    assert await store.claim("q", "k", 5) is ClaimResult.CLAIMED


async def test_close_forgets_everything() -> None:
    """Closing the store empties it."""
    store = MemoryStore(clock=FakeClock())
    await store.claim("q", "k", 5)
    await store.close()
    assert len(store) == 0
