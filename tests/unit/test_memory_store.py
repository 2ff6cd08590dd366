"""The in-memory store: bounded, evicts by age, expires on an injected clock."""

from __future__ import annotations

import random
from array import array
from collections import OrderedDict

import pytest

from framework.idempotency import ClaimResult, MemoryStore
from framework.idempotency.memory import Fingerprint, blake2b_fingerprint


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


# ---- the compact table: eviction, release, expiry, collisions, a reference model, memory ----


async def test_eviction_follows_refreshes() -> None:
    """Claiming an expired key or completing a key makes it the newest; a busy claim does not."""
    clock = FakeClock()
    store = MemoryStore(max_keys=3, clock=clock)
    for key in "abc":
        await store.claim("q", key, 10)
    await store.complete("q", "a", 100)  # age order now b, c, a
    assert await store.claim("q", "b", 10) is ClaimResult.BUSY  # no refresh
    await store.claim("q", "d", 10)  # evicts b: c, a, d
    assert len(store) == 3
    assert await store.claim("q", "c", 10) is ClaimResult.BUSY
    assert await store.claim("q", "a", 10) is ClaimResult.DONE
    clock.now += 11  # c's and d's leases expire
    assert await store.claim("q", "c", 10) is ClaimResult.CLAIMED  # refreshed: a, d, c
    await store.claim("q", "e", 10)  # evicts a
    assert await store.claim("q", "a", 10) is ClaimResult.CLAIMED  # evicts d
    assert await store.claim("q", "d", 10) is ClaimResult.CLAIMED  # evicts c
    assert await store.claim("q", "e", 10) is ClaimResult.BUSY
    assert await store.claim("q", "c", 10) is ClaimResult.CLAIMED


async def test_scopes_keep_keys_apart() -> None:
    """The same key in two scopes is two keys, and the encoding of the pair is unambiguous."""
    store = MemoryStore(clock=FakeClock())
    await store.claim("q1", "k", 10)
    await store.complete("q1", "k", 100)
    assert await store.claim("q2", "k", 10) is ClaimResult.CLAIMED
    assert await store.claim("ab", "c", 10) is ClaimResult.CLAIMED
    assert await store.claim("a", "bc", 10) is ClaimResult.CLAIMED
    assert await store.claim("", "\udc80", 10) is ClaimResult.CLAIMED  # a lone surrogate
    assert len(store) == 5


async def test_release_removes_only_a_claim() -> None:
    """Release forgets a claimed key, expired or not; never a done key; unknown keys are fine."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "claimed", 10)
    await store.claim("q", "done", 10)
    await store.complete("q", "done", 100)
    await store.claim("q", "expired", 1)
    clock.now += 2
    await store.release("q", "unknown")
    await store.release("q", "done")
    assert len(store) == 3
    await store.release("q", "claimed")
    await store.release("q", "expired")
    assert len(store) == 1
    assert await store.claim("q", "claimed", 10) is ClaimResult.CLAIMED
    assert await store.claim("q", "done", 10) is ClaimResult.DONE


async def test_expiry_is_strict_on_the_clock() -> None:
    """A key is live while its expiry is after now: at exactly its expiry it is gone."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "k", 5)
    await store.complete("q", "k", 60)
    clock.now += 60
    assert await store.claim("q", "k", 5) is ClaimResult.CLAIMED
    clock.now += 4.5
    assert await store.claim("q", "k", 5) is ClaimResult.BUSY
    assert len(store) == 1


def homes(scope: str, key: str) -> tuple[int, int]:
    """A fingerprint that collides on purpose: key "3.x" starts probing at slot 3."""
    home, _, rest = key.partition(".")
    return int(home), int.from_bytes(rest.encode() or b"\0", "big")


async def test_deleting_in_the_middle_of_probe_chains() -> None:
    """Keys behind a deleted key in its probe chain, wrapping around the table, stay found."""
    store = MemoryStore(max_keys=6, clock=FakeClock(), fingerprint=homes)  # 16 slots
    keys = ["14.a", "15.b", "14.c", "0.d", "14.e", "1.f"]  # chain 14 15 0 1 2 3
    for key in keys:
        assert await store.claim("q", key, 10) is ClaimResult.CLAIMED
    for gone in ["14.c", "14.a", "0.d"]:  # the middle, the head, after a wrap
        await store.release("q", gone)
        keys.remove(gone)
        for key in keys:
            assert await store.claim("q", key, 10) is ClaimResult.BUSY, (gone, key)
        assert await store.claim("q", gone, 10) is ClaimResult.CLAIMED
        await store.release("q", gone)
    assert len(store) == 3


async def test_same_home_and_high_half_differ_by_low_half() -> None:
    """Two fingerprints equal in one 64-bit half are still two keys."""
    store = MemoryStore(max_keys=4, clock=FakeClock(), fingerprint=homes)
    await store.claim("q", "5.x", 10)
    await store.complete("q", "5.x", 100)
    assert await store.claim("q", "5.y", 10) is ClaimResult.CLAIMED
    assert await store.claim("q", "5.x", 10) is ClaimResult.DONE


class ReferenceStore:
    """The OrderedDict store MemoryStore replaced: the model it must behave like."""

    def __init__(self, max_keys: int, clock: FakeClock) -> None:
        self.entries: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()
        self.max_keys = max_keys
        self.clock = clock

    def claim(self, scope: str, key: str, lease: float) -> ClaimResult:
        now = self.clock()
        entry = self.entries.get((scope, key))
        if entry is not None and entry[1] > now:
            return ClaimResult.DONE if entry[0] else ClaimResult.BUSY
        self.put((scope, key), False, now + lease)
        return ClaimResult.CLAIMED

    def complete(self, scope: str, key: str, retention: float) -> None:
        self.put((scope, key), True, self.clock() + retention)

    def release(self, scope: str, key: str) -> None:
        entry = self.entries.get((scope, key))
        if entry is not None and not entry[0]:
            del self.entries[(scope, key)]

    def put(self, item: tuple[str, str], done: bool, expires_at: float) -> None:
        self.entries.pop(item, None)
        self.entries[item] = (done, expires_at)
        while len(self.entries) > self.max_keys:
            self.entries.popitem(last=False)


def few_homes(scope: str, key: str) -> tuple[int, int]:
    """Real fingerprints squeezed onto 3 home slots: long chains, wraps, constant shifting."""
    hi, lo = blake2b_fingerprint(scope, key)
    return 13 + hi % 3, lo


@pytest.mark.parametrize("fingerprint", [blake2b_fingerprint, few_homes])
@pytest.mark.parametrize(("seed", "max_keys"), [(1, 1), (2, 3), (3, 5), (4, 7), (5, 0)])
async def test_behaves_like_the_reference_model(
    seed: int, max_keys: int, fingerprint: Fingerprint
) -> None:
    """Thousands of random operations on a few keys: same results, same length, every step."""
    rng = random.Random(seed)
    clock = FakeClock()
    store = MemoryStore(max_keys=max_keys, clock=clock, fingerprint=fingerprint)
    model = ReferenceStore(max_keys, clock)
    keys = [(scope, str(k)) for scope in ("q1", "q2") for k in range(6)]
    for step in range(5000):
        scope, key = rng.choice(keys)
        op = rng.random()
        if op < 0.45:
            lease = rng.choice([0.5, 1.0, 3.0])
            assert await store.claim(scope, key, lease) is model.claim(scope, key, lease), step
        elif op < 0.7:
            retention = rng.choice([1.0, 4.0, 20.0])
            await store.complete(scope, key, retention)
            model.complete(scope, key, retention)
        elif op < 0.85:
            await store.release(scope, key)
            model.release(scope, key)
        elif op < 0.995:
            clock.now += rng.choice([0.25, 0.5, 1.0])
        else:
            await store.close()
            model.entries.clear()
        assert len(store) == len(model.entries), step
    for scope, key in keys:  # what is left, oldest first
        assert await store.claim(scope, key, 1) is model.claim(scope, key, 1)


def footprint(store: MemoryStore) -> int:
    """Bytes in the store's arrays."""
    arrays = [v for v in vars(store).values() if isinstance(v, array)]
    return sum(a.buffer_info()[1] * a.itemsize for a in arrays)


@pytest.mark.parametrize("max_keys", [1, 1000, 1024, 5000])
async def test_memory_is_bounded_and_allocated_up_front(max_keys: int) -> None:
    """At most 64 bytes per key (plus a little for tiny stores), unchanged by 3 x max_keys keys."""
    store = MemoryStore(max_keys=max_keys, clock=FakeClock())
    before = footprint(store)
    assert before <= 64 * max_keys + 256
    for n in range(3 * max_keys):
        await store.claim("q", str(n), 10)
        await store.complete("q", str(n), 100)
        if n % 7 == 0:
            await store.claim("q", str(n + 1), 10)
            await store.release("q", str(n + 1))
    assert len(store) == max_keys
    assert footprint(store) == before
    await store.close()
    assert footprint(store) == before


def test_the_default_store_stays_under_50_bytes_a_key() -> None:
    """100,000 keys in less than 5 MB."""
    assert footprint(MemoryStore()) <= 50 * 100_000


async def test_fenced_completion_keeps_the_new_holder() -> None:
    """A token whose lease expired and was taken over cannot complete or release the key."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "k", 5, "old")
    clock.now += 6
    assert await store.claim("q", "k", 5, "new") is ClaimResult.CLAIMED
    assert await store.renew("q", "k", 5, "old") is False
    assert await store.complete("q", "k", 60, "old") is False
    await store.release("q", "k", "old")
    assert await store.claim("q", "k", 5, "x") is ClaimResult.BUSY
    assert await store.complete("q", "k", 60, "new") is True
    assert await store.claim("q", "k", 5, "x") is ClaimResult.DONE


async def test_renewal_moves_the_expiry() -> None:
    """A renewed lease is busy past its first expiry, then expires at the renewed time."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.claim("q", "k", 5, "t")
    clock.now += 4
    assert await store.renew("q", "k", 5, "t") is True
    clock.now += 4
    assert await store.claim("q", "k", 5, "x") is ClaimResult.BUSY
    clock.now += 1.1
    assert await store.claim("q", "k", 5, "x") is ClaimResult.CLAIMED
