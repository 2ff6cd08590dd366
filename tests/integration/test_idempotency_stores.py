"""One behavioural suite for every idempotency store: memory, SQLite, Redis, PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from framework.errors import StoreUnavailable
from framework.idempotency import ClaimResult, IdempotencyStore, open_store

LEASE = 30.0
RETENTION = 60.0
StoreUrl = Callable[[str], str]
SHARED_KINDS = ["sqlite", "redis", "postgres"]


@pytest.fixture
def scope() -> str:
    """A scope (queue name) unique to this test, so shared stores never mix tests."""
    return f"t.scope.{uuid.uuid4().hex}"


async def test_first_claim_is_claimed(store: IdempotencyStore, scope: str) -> None:
    """A key nobody has seen is claimed."""
    assert await store.claim(scope, "k", LEASE) is ClaimResult.CLAIMED


async def test_claim_while_leased_is_busy(store: IdempotencyStore, scope: str) -> None:
    """A second claim while the lease runs finds the key busy."""
    await store.claim(scope, "k", LEASE)
    assert await store.claim(scope, "k", LEASE) is ClaimResult.BUSY


async def test_claim_after_complete_is_done(store: IdempotencyStore, scope: str) -> None:
    """Once completed, a key is reported done to every later claim."""
    await store.claim(scope, "k", LEASE)
    await store.complete(scope, "k", RETENTION)
    assert await store.claim(scope, "k", LEASE) is ClaimResult.DONE
    assert await store.claim(scope, "k", LEASE) is ClaimResult.DONE


async def test_release_makes_key_claimable(store: IdempotencyStore, scope: str) -> None:
    """A released key (failed handler) can be claimed again by the retry."""
    await store.claim(scope, "k", LEASE)
    await store.release(scope, "k")
    assert await store.claim(scope, "k", LEASE) is ClaimResult.CLAIMED


async def test_release_does_not_undo_done(store: IdempotencyStore, scope: str) -> None:
    """Releasing a completed key leaves it done."""
    await store.claim(scope, "k", LEASE)
    await store.complete(scope, "k", RETENTION)
    await store.release(scope, "k")
    assert await store.claim(scope, "k", LEASE) is ClaimResult.DONE


async def test_expired_lease_is_claimable(store: IdempotencyStore, scope: str) -> None:
    """A lease whose holder died (never completed nor released) frees the key when it expires."""
    assert await store.claim(scope, "k", 0.2) is ClaimResult.CLAIMED
    await asyncio.sleep(0.4)  # the lease is a TTL in the store: nothing to await but time
    assert await store.claim(scope, "k", LEASE) is ClaimResult.CLAIMED


async def test_done_expires_after_retention(store: IdempotencyStore, scope: str) -> None:
    """A done key is forgotten once its retention passes."""
    await store.claim(scope, "k", LEASE)
    await store.complete(scope, "k", 0.2)
    await asyncio.sleep(0.4)  # retention is a TTL in the store: nothing to await but time
    assert await store.claim(scope, "k", LEASE) is ClaimResult.CLAIMED


async def test_scopes_are_independent(store: IdempotencyStore, scope: str) -> None:
    """The same key in two scopes (queues) is claimed once in each."""
    await store.claim(scope, "k", LEASE)
    await store.complete(scope, "k", RETENTION)
    assert await store.claim(f"{scope}.other", "k", LEASE) is ClaimResult.CLAIMED


async def test_keys_are_independent(store: IdempotencyStore, scope: str) -> None:
    """Claiming one key leaves other keys in the scope free."""
    await store.claim(scope, "a", LEASE)
    assert await store.claim(scope, "b", LEASE) is ClaimResult.CLAIMED


async def test_concurrent_claims_have_one_winner(store: IdempotencyStore, scope: str) -> None:
    """Twenty concurrent claims of one key: exactly one is claimed, the rest busy."""
    results = await asyncio.gather(*(store.claim(scope, "k", LEASE) for _ in range(20)))
    assert Counter(results) == {ClaimResult.CLAIMED: 1, ClaimResult.BUSY: 19}


@pytest.mark.parametrize("kind", SHARED_KINDS)
async def test_two_instances_share_claims(kind: str, store_url: StoreUrl, scope: str) -> None:
    """Two store instances on one backend (two replicas) see each other's claims."""
    first = await open_store(store_url(kind))
    second = await open_store(store_url(kind))
    try:
        results = await asyncio.gather(
            *(s.claim(scope, "k", LEASE) for s in (first, second) for _ in range(10))
        )
        assert Counter(results)[ClaimResult.CLAIMED] == 1
        winner = first if await second.claim(scope, "k", LEASE) is ClaimResult.BUSY else second
        await winner.complete(scope, "k", RETENTION)
        assert await first.claim(scope, "k", LEASE) is ClaimResult.DONE
        assert await second.claim(scope, "k", LEASE) is ClaimResult.DONE
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("kind", SHARED_KINDS)
async def test_release_only_drops_own_lease(kind: str, store_url: StoreUrl, scope: str) -> None:
    """A replica whose lease expired and was taken over cannot release the new holder's lease."""
    slow = await open_store(store_url(kind))
    other = await open_store(store_url(kind))
    try:
        assert await slow.claim(scope, "k", 0.2) is ClaimResult.CLAIMED
        await asyncio.sleep(0.4)  # let the slow replica's lease lapse
        assert await other.claim(scope, "k", LEASE) is ClaimResult.CLAIMED
        await slow.release(scope, "k")
        assert await other.claim(scope, "k", LEASE) is ClaimResult.BUSY
    finally:
        await slow.close()
        await other.close()


async def test_sqlite_survives_reopen(store_url: StoreUrl, scope: str) -> None:
    """Done keys in a SQLite file are still done after the store is closed and reopened."""
    url = store_url("sqlite")
    first = await open_store(url)
    await first.claim(scope, "k", LEASE)
    await first.complete(scope, "k", RETENTION)
    await first.close()
    reopened = await open_store(url)
    try:
        assert await reopened.claim(scope, "k", LEASE) is ClaimResult.DONE
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    "url", ["redis://user:s3cret@127.0.0.1:1/0", "postgresql://user:s3cret@127.0.0.1:1/db"]
)
async def test_unreachable_store_error_masks_password(url: str) -> None:
    """An unreachable store raises StoreUnavailable naming the URL without its password."""
    with pytest.raises(StoreUnavailable, match=r"user:\*\*\*@127\.0\.0\.1:1") as caught:
        await open_store(url)
    assert "s3cret" not in str(caught.value)
