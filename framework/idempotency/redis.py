"""Redis idempotency store: shared by every replica; leases and retention are Redis TTLs.

A key's value is a random lease token while a worker holds it and `done` once handled.
Claiming is SET NX PX, then reading the winner, in one script, so DONE and BUSY are told
apart atomically; releasing deletes only the lease this store took (compare-and-delete),
never a lease another worker took after ours expired. Expiry runs on the Redis clock.

Calls are batched (`batching.Batcher`): the calls that arrive while a round trip is in
flight go together in the next, as one call of one script that runs them in order, each
under `pcall` so one call's error (a key holding another type) is that call's alone. The
script touches many keys at once: a standalone server (or one Redis Cluster hash slot).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from framework.idempotency.batching import Batcher
from framework.idempotency.store import ClaimResult

KEY_PREFIX = "fw:idem"
DONE = "done"

# KEYS[i] is the i-th call's key; ARGV[2i-1], ARGV[2i] its operation and token, ARGV[2n+i] its
# time in ms (lease or retention). Each result: claimed/done/busy for a claim, 1/0 otherwise.
_BATCH = """
local n = #KEYS
local function claim(key, token, ms)
  if redis.call('SET', key, token, 'NX', 'PX', ms) then return 'claimed' end
  if redis.call('GET', key) == 'done' then return 'done' end
  return 'busy'
end
-- fenced: only while the claim still holds it, or once nobody does (the lease expired)
local function complete(key, token, ms)
  local held = redis.call('GET', key)
  if held and held ~= token then return 0 end
  redis.call('SET', key, 'done', 'PX', ms)
  return 1
end
local function force(key, token, ms)
  redis.call('SET', key, 'done', 'PX', ms)
  return 1
end
local function renew(key, token, ms)
  if redis.call('GET', key) == token then return redis.call('PEXPIRE', key, ms) end
  return 0
end
local function release(key, token, ms)
  if redis.call('GET', key) == token then return redis.call('DEL', key) end
  return 0
end
local ops = {c = claim, f = complete, d = force, r = renew, x = release}
local out = {}
for i = 1, n do
  local ok, result = pcall(ops[ARGV[2 * i - 1]], KEYS[i], ARGV[2 * i], ARGV[2 * n + i])
  if ok then
    out[i] = result
  else
    if type(result) == 'table' then result = result.err end
    out[i] = {err = tostring(result)}
  end
end
return out
"""


class _Call(NamedTuple):
    op: str  # c: claim, f: fenced complete, d: unconditional complete, r: renew, x: release
    key: str
    token: str
    ms: int


def redis_key(scope: str, key: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key that records idempotency `key` in `scope` (the consuming queue)."""
    return f"{prefix}:{scope}:{key}"


class RedisStore:
    """Keys as Redis strings under `fw:idem:<scope>:<key>`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_BATCH)
        self._batcher: Batcher[_Call, Any] = Batcher(
            self._run, name="fw-redis-store", isolate=_one_call_error
        )
        self._tokens: dict[tuple[str, str], str] = {}

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = KEY_PREFIX, timeout: float | None = None
    ) -> RedisStore:
        """Connect to `url` and check the server answers (raises the driver's error if not).

        `timeout` bounds connecting and every command (socket timeouts), so a server that
        stops answering fails calls instead of hanging them.
        """
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client, prefix=prefix)

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        mine = token or uuid.uuid4().hex
        result = ClaimResult(await self._call("c", scope, key, mine, lease))
        if result is ClaimResult.CLAIMED and token is None:
            self._tokens[(scope, key)] = mine
        return result

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        return bool(await self._call("r", scope, key, token, lease))

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
            await self._call("d", scope, key, "", retention)
            return None
        return bool(await self._call("f", scope, key, token, retention))

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._call("x", scope, key, mine, 0.0)

    async def close(self) -> None:
        """Send what is already queued, then close the connection."""
        try:
            await self._batcher.close()
        finally:
            await self._client.aclose()

    async def _call(self, op: str, scope: str, key: str, token: str, seconds: float) -> Any:
        return await self._batcher.call(
            _Call(op, redis_key(scope, key, self._prefix), token, _ms(seconds))
        )

    async def _run(self, calls: Sequence[_Call]) -> list[Any]:
        """One script call for the batch; an error reply in the results is that call's."""
        args: list[str | int] = []
        for call in calls:
            args += (call.op, call.token)
        args += [call.ms for call in calls]
        results: list[Any] = await self._script(keys=[call.key for call in calls], args=args)
        return results


def _one_call_error(error: Exception) -> bool:
    """Whether a failed batch may be one call's doing (an error reply, not the connection)."""
    return isinstance(error, ResponseError)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
