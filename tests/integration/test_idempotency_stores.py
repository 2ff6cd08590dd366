"""One behavioural suite for every idempotency store: memory, SQLite, Redis, PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from framework.errors import StoreUnavailable
from framework.idempotency import ClaimResult, IdempotencyStore, open_store
from tests.chaos.proxy import FaultProxy

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


async def test_one_batch_answers_each_claim_in_order(store: IdempotencyStore, scope: str) -> None:
    """Claims made together, of distinct keys and of one key, each get what claiming one
    by one in call order gives: the first claim of a key wins, the later ones find it busy,
    or done once completed."""
    keys = [f"k{n}" for n in range(10)] + ["same"] * 10
    results = await asyncio.gather(
        *(store.claim(scope, k, LEASE, f"t{n}") for n, k in enumerate(keys))
    )
    assert results == [ClaimResult.CLAIMED] * 11 + [ClaimResult.BUSY] * 9
    assert await store.complete(scope, "same", RETENTION, "t10") is True
    again = await asyncio.gather(
        *(
            store.claim(scope, k, LEASE, f"u{n}")
            for n, k in enumerate(["same", "k0", "same", "new"])
        )
    )
    assert again == [ClaimResult.DONE, ClaimResult.BUSY, ClaimResult.DONE, ClaimResult.CLAIMED]


async def test_keys_of_any_text_stay_apart_in_one_batch(
    store: IdempotencyStore, scope: str
) -> None:
    """Keys with separators, line breaks and non-ASCII text, claimed together, are each
    their own key."""
    keys = ["a,1", "a\n1", "a", "\u00e9,\u00fc:1", "\u00e9", "1,2,3,"]
    first = await asyncio.gather(*(store.claim(scope, k, LEASE, f"t:{k}") for k in keys))
    assert first == [ClaimResult.CLAIMED] * len(keys)
    done = await asyncio.gather(*(store.complete(scope, k, RETENTION, f"t:{k}") for k in keys))
    assert done == [True] * len(keys)
    assert await store.claim(scope, "a,", LEASE) is ClaimResult.CLAIMED


async def test_one_batch_answers_each_completion_in_order(
    store: IdempotencyStore, scope: str
) -> None:
    """Completions made together, twice of one key: the holder's is recorded, a stranger's
    refused, the holder's second refused (already done), each caller told its own."""
    await store.claim(scope, "a", LEASE, "ta")
    await store.claim(scope, "b", LEASE, "tb")
    results = await asyncio.gather(
        store.complete(scope, "a", RETENTION, "stranger"),
        store.complete(scope, "a", RETENTION, "ta"),
        store.complete(scope, "a", RETENTION, "ta"),
        store.complete(scope, "b", RETENTION, "tb"),
    )
    assert list(results) == [False, True, False, True]
    assert await store.claim(scope, "a", LEASE) is ClaimResult.DONE


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_concurrent_calls_share_one_connection(
    kind: str, store_url: StoreUrl, scope: str
) -> None:
    """Fifty concurrent claims, then their completions, travel together over the one
    connection the store opened (batched), not over a connection each."""
    url = store_url(kind)
    host, port = url.split("//", 1)[1].split("@")[-1].split("/")[0].rsplit(":", 1)
    async with FaultProxy(host, int(port)) as proxy:
        store = await open_store(proxy.url(url))
        try:
            keys = [f"k{n}" for n in range(50)]
            claims = await asyncio.gather(*(store.claim(scope, k, LEASE, k) for k in keys))
            assert claims == [ClaimResult.CLAIMED] * 50
            done = await asyncio.gather(*(store.complete(scope, k, RETENTION, k) for k in keys))
            assert done == [True] * 50
            assert proxy.accepted == 1
        finally:
            await store.close()


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


# ---- lease tokens: renewal and fencing ---------------------------------------------------


async def test_renewal_extends_the_lease(store: IdempotencyStore, scope: str) -> None:
    """A lease renewed by its token outlives its first expiry: the key stays busy."""
    assert await store.claim(scope, "k", 0.3, "t1") is ClaimResult.CLAIMED
    assert await store.renew(scope, "k", LEASE, "t1") is True
    await asyncio.sleep(0.5)
    assert await store.claim(scope, "k", LEASE, "t2") is ClaimResult.BUSY


async def test_renewal_with_another_token_is_refused(store: IdempotencyStore, scope: str) -> None:
    """Only the claim's own token renews its lease; a stranger's renewal changes nothing."""
    await store.claim(scope, "k", 0.3, "t1")
    assert await store.renew(scope, "k", LEASE, "stranger") is False
    await asyncio.sleep(0.5)
    assert await store.claim(scope, "k", LEASE, "t2") is ClaimResult.CLAIMED


async def test_renewal_of_a_done_key_is_refused(store: IdempotencyStore, scope: str) -> None:
    """Once the key is done there is no lease left to renew."""
    await store.claim(scope, "k", LEASE, "t1")
    assert await store.complete(scope, "k", RETENTION, "t1") is True
    assert await store.renew(scope, "k", LEASE, "t1") is False
    assert await store.claim(scope, "k", LEASE, "t2") is ClaimResult.DONE


async def test_late_completion_after_takeover_is_fenced(
    store: IdempotencyStore, scope: str
) -> None:
    """A completion whose lease expired and was taken over is refused; the new holder's
    lease stands and its own completion is recorded."""
    await store.claim(scope, "k", 0.2, "late")
    await asyncio.sleep(0.4)
    assert await store.claim(scope, "k", LEASE, "new") is ClaimResult.CLAIMED
    assert await store.complete(scope, "k", RETENTION, "late") is False
    assert await store.claim(scope, "k", LEASE, "third") is ClaimResult.BUSY
    assert await store.complete(scope, "k", RETENTION, "new") is True
    assert await store.claim(scope, "k", LEASE, "third") is ClaimResult.DONE


async def test_completion_after_another_finished_is_fenced(
    store: IdempotencyStore, scope: str
) -> None:
    """A late completion never overwrites a key another holder already marked done."""
    await store.claim(scope, "k", 0.2, "late")
    await asyncio.sleep(0.4)
    await store.claim(scope, "k", LEASE, "new")
    assert await store.complete(scope, "k", RETENTION, "new") is True
    assert await store.complete(scope, "k", 0.2, "late") is False
    await asyncio.sleep(0.4)  # the late completion's short retention did not replace it
    assert await store.claim(scope, "k", LEASE, "third") is ClaimResult.DONE


async def test_completion_after_own_expiry_is_recorded(store: IdempotencyStore, scope: str) -> None:
    """A lease that lapsed without anyone taking it over still completes: nobody else ran."""
    await store.claim(scope, "k", 0.2, "slow")
    await asyncio.sleep(0.4)
    assert await store.complete(scope, "k", RETENTION, "slow") is True
    assert await store.claim(scope, "k", LEASE, "t2") is ClaimResult.DONE


async def test_release_by_token_spares_another_holder(store: IdempotencyStore, scope: str) -> None:
    """Releasing with an outdated token leaves the current holder's lease in place."""
    await store.claim(scope, "k", 0.2, "old")
    await asyncio.sleep(0.4)
    await store.claim(scope, "k", LEASE, "new")
    await store.release(scope, "k", "old")
    assert await store.claim(scope, "k", LEASE, "third") is ClaimResult.BUSY
    await store.release(scope, "k", "new")
    assert await store.claim(scope, "k", LEASE, "third") is ClaimResult.CLAIMED


@pytest.mark.parametrize("kind", SHARED_KINDS)
async def test_fencing_holds_across_replicas(kind: str, store_url: StoreUrl, scope: str) -> None:
    """Two replicas on one shared store: the one whose lease was taken over cannot complete."""
    slow = await open_store(store_url(kind))
    other = await open_store(store_url(kind))
    try:
        await slow.claim(scope, "k", 0.2, "slow")
        await asyncio.sleep(0.4)
        assert await other.claim(scope, "k", LEASE, "other") is ClaimResult.CLAIMED
        assert await slow.renew(scope, "k", LEASE, "slow") is False
        assert await slow.complete(scope, "k", RETENTION, "slow") is False
        assert await other.complete(scope, "k", RETENTION, "other") is True
        assert await slow.claim(scope, "k", LEASE, "again") is ClaimResult.DONE
    finally:
        await slow.close()
        await other.close()
