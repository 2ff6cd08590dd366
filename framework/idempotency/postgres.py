"""PostgreSQL idempotency store: shared by every replica; one row per (scope, key).

Claiming is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING`, atomic under
concurrent claims; done rows keep an expiry (the retention) and are purged now and then.
Expiry runs on the database clock (`clock_timestamp()`), so replicas' clocks do not matter.

Claims and completions are batched (`batching.Batcher`): the ones that arrive while a
statement is in flight go together in the next, one statement over `unnest` arrays for all
of them. A key claimed twice in one batch is sent once (the others are busy, or done, as the
first found it); a key completed twice runs in a second round, so each result is what the
calls one by one would give. Rows go in (scope, key) order, so two replicas' batches lock
shared keys in the same order and cannot deadlock. Done rows keep the completing token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from framework.idempotency.batching import Batcher
from framework.idempotency.store import ClaimResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fw_idempotency (
    scope text NOT NULL,
    key text NOT NULL,
    done boolean NOT NULL,
    token text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
)
"""
_CLAIM_MANY = """
INSERT INTO fw_idempotency AS t (scope, key, done, token, expires_at)
SELECT scope, key, false, token, clock_timestamp() + make_interval(secs => seconds)
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS i(scope, key, token, seconds)
ON CONFLICT (scope, key) DO UPDATE
    SET done = false, token = excluded.token, expires_at = excluded.expires_at
    WHERE t.expires_at <= clock_timestamp()
RETURNING t.scope, t.key
"""
_STATE_MANY = """
SELECT t.scope, t.key, t.done FROM fw_idempotency AS t
JOIN unnest($1::text[], $2::text[]) AS i(scope, key) USING (scope, key)
"""
# fenced: only while the claim still holds it, or once nobody does (the lease expired); a
# NULL token (an older caller) completes unconditionally
_COMPLETE_MANY = """
INSERT INTO fw_idempotency AS t (scope, key, done, token, expires_at)
SELECT scope, key, true, token, clock_timestamp() + make_interval(secs => seconds)
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS i(scope, key, token, seconds)
ON CONFLICT (scope, key) DO UPDATE
    SET done = true, token = excluded.token, expires_at = excluded.expires_at
    WHERE excluded.token IS NULL
        OR (NOT t.done AND t.token = excluded.token)
        OR t.expires_at <= clock_timestamp()
RETURNING t.scope, t.key
"""
_RENEW = """
UPDATE fw_idempotency SET expires_at = clock_timestamp() + make_interval(secs => $3)
WHERE scope = $1 AND key = $2 AND NOT done AND token = $4
RETURNING true
"""
_RELEASE = "DELETE FROM fw_idempotency WHERE scope = $1 AND key = $2 AND NOT done AND token = $3"
_PURGE = "DELETE FROM fw_idempotency WHERE expires_at <= clock_timestamp()"
_Key = tuple[str, str]


class _Call(NamedTuple):
    scope: str
    key: str
    token: str | None  # None: an unconditional completion
    seconds: float  # the lease, or the retention


# Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: serialise it.
_SCHEMA_LOCK = 0x66772D69646D  # "fw-idm"


class PostgresStore:
    """Keys in one table, created if missing; expired rows are purged now and then."""

    def __init__(
        self, pool: Any, *, purge_interval: float = 60.0, timeout: float | None = None
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._tokens: dict[tuple[str, str], str] = {}
        self._claims: Batcher[_Call, ClaimResult] = Batcher(
            self._claim_batch, name="fw-postgres-claims", isolate=_one_call_error
        )
        self._completions: Batcher[_Call, bool | None] = Batcher(
            self._complete_batch, name="fw-postgres-completions", isolate=_one_call_error
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        max_size: int = 10,
        purge_interval: float = 60.0,
        timeout: float | None = None,
    ) -> PostgresStore:
        """Connect a pool to `url` and create the table if missing.

        `timeout` bounds connecting, acquiring a connection and every statement, so a server
        that stops answering fails calls instead of hanging them.
        """
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=timeout, command_timeout=timeout
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, purge_interval=purge_interval, timeout=timeout)

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        mine = token or uuid.uuid4().hex
        result = await self._claims.call(_Call(scope, key, mine, float(lease)))
        if result is ClaimResult.CLAIMED and token is None:
            self._tokens[(scope, key)] = mine
        return result

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        renewed = await self._pool.fetchval(
            _RENEW, scope, key, float(lease), token, timeout=self._timeout
        )
        return renewed is not None

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
        return await self._completions.call(_Call(scope, key, token, float(retention)))

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._pool.execute(_RELEASE, scope, key, mine, timeout=self._timeout)

    async def close(self) -> None:
        """Run the calls already queued, then close the pool."""
        try:
            await self._claims.close()
            await self._completions.close()
        finally:
            await self._pool.close()

    async def purge(self) -> None:
        """Delete every expired row now."""
        await self._pool.execute(_PURGE, timeout=self._timeout)

    async def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            await self.purge()

    async def _claim_batch(self, calls: Sequence[_Call]) -> list[ClaimResult]:
        """One statement claims every key of the batch (each once); a key's later claims in
        the batch find it busy if the first claimed it, else what the first found."""
        await self._maybe_purge()
        first: dict[_Key, int] = {}
        for n, call in enumerate(calls):
            first.setdefault((call.scope, call.key), n)
        async with self._pool.acquire(timeout=self._timeout) as conn:
            found = await self._claim_keys(conn, [calls[first[k]] for k in sorted(first)])
        results = []
        for n, call in enumerate(calls):
            result = found[(call.scope, call.key)]
            if result is ClaimResult.CLAIMED and first[(call.scope, call.key)] != n:
                result = ClaimResult.BUSY
            results.append(result)
        return results

    async def _claim_keys(self, conn: Any, calls: list[_Call]) -> dict[_Key, ClaimResult]:
        """Claim distinct keys; those not claimed are done or busy as their rows say."""
        found: dict[_Key, ClaimResult] = {}
        while calls:
            claimed = await self._keys(conn, _CLAIM_MANY, calls)
            found.update(dict.fromkeys(claimed, ClaimResult.CLAIMED))
            calls = [call for call in calls if (call.scope, call.key) not in claimed]
            if not calls:
                break
            rows = await conn.fetch(
                _STATE_MANY,
                [call.scope for call in calls],
                [call.key for call in calls],
                timeout=self._timeout,
            )
            for scope, key, done in rows:
                found[(scope, key)] = ClaimResult.DONE if done else ClaimResult.BUSY
            # no row: it expired and was purged in between, so it is free again
            calls = [call for call in calls if (call.scope, call.key) not in found]
        return found

    async def _complete_batch(self, calls: Sequence[_Call]) -> list[bool | None]:
        """One statement per round; a round holds each key's n-th completion of the batch."""
        results: list[bool | None] = [None] * len(calls)
        async with self._pool.acquire(timeout=self._timeout) as conn:
            for round_ in _rounds(calls):
                recorded = await self._keys(conn, _COMPLETE_MANY, [calls[n] for n in round_])
                for n in round_:
                    if calls[n].token is not None:
                        results[n] = (calls[n].scope, calls[n].key) in recorded
        return results

    async def _keys(self, conn: Any, statement: str, calls: list[_Call]) -> set[_Key]:
        """Run `statement` over the calls' arrays; the keys it returned."""
        rows = await conn.fetch(
            statement,
            [call.scope for call in calls],
            [call.key for call in calls],
            [call.token for call in calls],
            [call.seconds for call in calls],
            timeout=self._timeout,
        )
        return {(scope, key) for scope, key in rows}


def _rounds(calls: Sequence[_Call]) -> list[list[int]]:
    """The calls' indexes in rounds of distinct keys, each in (scope, key) order: a key's
    n-th call is in round n."""
    rounds: list[list[int]] = []
    seen: dict[_Key, int] = {}
    for n, call in enumerate(calls):
        key = (call.scope, call.key)
        nth = seen[key] = seen.get(key, -1) + 1
        if nth == len(rounds):
            rounds.append([])
        rounds[nth].append(n)
    return [sorted(round_, key=lambda n: (calls[n].scope, calls[n].key)) for round_ in rounds]


def _one_call_error(error: Exception) -> bool:
    """Whether a failed batch may be one call's doing: its data (an invalid key), not the
    connection, the server or a timeout."""
    return isinstance(error, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)
