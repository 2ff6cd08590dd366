"""Redis idempotency store: shared by every replica; leases and retention are Redis TTLs.

A key's value is a random lease token while a worker holds it and `done` once handled.
Claiming is SET NX PX, then reading the winner, in one script, so DONE and BUSY are told
apart atomically; releasing deletes only the lease this store took (compare-and-delete),
never a lease another worker took after ours expired. Expiry runs on the Redis clock.

Calls are batched (`batching.Batcher`): the calls that arrive while a round trip is in
flight go together in the next, as one call of one script that runs them in order, each
under `pcall` so one call's error (a key holding another type) is that call's alone. The
calls travel as one length-prefixed string and the answers come back as one string of
one-letter codes: a few bytes per call, where an argument and a reply per call cost the
driver more than the server. The script touches many keys at once: a standalone server.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from framework.idempotency.batching import Batcher
from framework.idempotency.store import ClaimResult

KEY_PREFIX = "fw:idem"
DONE = "done"

# ARGV[1]: per call `<op><ms>,<token length>,<key length>,<token><key>` (lengths in bytes),
# op c: claim, f: fenced complete, d: unconditional complete, r: renew, x: release; ms the
# lease or the retention. The reply: one code per call (C claimed, D done, B busy, 1 yes,
# 0 no, E failed), then each failed call's error, in order.
_BATCH = """
local function claim(key, token, ms)
  if redis.call('SET', key, token, 'NX', 'PX', ms) then return 'C' end
  if redis.call('GET', key) == 'done' then return 'D' end
  return 'B'
end
-- fenced: only while the claim still holds it, or once nobody does (the lease expired)
local function complete(key, token, ms)
  local held = redis.call('GET', key)
  if held and held ~= token then return '0' end
  redis.call('SET', key, 'done', 'PX', ms)
  return '1'
end
local function force(key, token, ms)
  redis.call('SET', key, 'done', 'PX', ms)
  return '1'
end
local function renew(key, token, ms)
  if redis.call('GET', key) == token and redis.call('PEXPIRE', key, ms) == 1 then return '1' end
  return '0'
end
local function release(key, token, ms)
  if redis.call('GET', key) == token and redis.call('DEL', key) == 1 then return '1' end
  return '0'
end
local ops = {c = claim, f = complete, d = force, r = renew, x = release}
local calls, pos, codes, reply = ARGV[1], 1, {}, {''}
while pos <= #calls do
  local op = string.sub(calls, pos, pos)
  local _, last, ms, tlen, klen = string.find(calls, '^(%d+),(%d+),(%d+),', pos + 1)
  local token = string.sub(calls, last + 1, last + tlen)
  local key = string.sub(calls, last + tlen + 1, last + tlen + klen)
  pos = last + tlen + klen + 1
  local ok, result = pcall(ops[op], key, token, ms)
  if ok then
    codes[#codes + 1] = result
  else
    if type(result) == 'table' then result = result.err end
    codes[#codes + 1] = 'E'
    reply[#reply + 1] = tostring(result)
  end
end
reply[1] = table.concat(codes)
return reply
"""
_ANSWERS: dict[str, Any] = {
    "C": ClaimResult.CLAIMED,
    "D": ClaimResult.DONE,
    "B": ClaimResult.BUSY,
    "1": True,
    "0": False,
}


def redis_key(scope: str, key: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key that records idempotency `key` in `scope` (the consuming queue)."""
    return f"{prefix}:{scope}:{key}"


class RedisStore:
    """Keys as Redis strings under `fw:idem:<scope>:<key>`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_BATCH)
        self._batcher: Batcher[bytes, Any] = Batcher(
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
        result: ClaimResult = await self._call(b"c", scope, key, mine, lease)
        if result is ClaimResult.CLAIMED and token is None:
            self._tokens[(scope, key)] = mine
        return result

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        return bool(await self._call(b"r", scope, key, token, lease))

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
            await self._call(b"d", scope, key, "", retention)
            return None
        return bool(await self._call(b"f", scope, key, token, retention))

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._call(b"x", scope, key, mine, 0.0)

    async def close(self) -> None:
        """Send what is already queued, then close the connection."""
        try:
            await self._batcher.close()
        finally:
            await self._client.aclose()

    async def _call(self, op: bytes, scope: str, key: str, token: str, seconds: float) -> Any:
        mine, where = token.encode(), redis_key(scope, key, self._prefix).encode()
        call = b"%s%d,%d,%d,%s%s" % (op, _ms(seconds), len(mine), len(where), mine, where)
        return await self._batcher.call(call)

    async def _run(self, calls: Sequence[bytes]) -> list[Any]:
        """One script call for the batch; a call that failed in it gets its own error."""
        codes, *errors = await self._script(args=[b"".join(calls)])
        failed = iter(errors)
        return [_ANSWERS[code] if code != "E" else ResponseError(next(failed)) for code in codes]


def _one_call_error(error: Exception) -> bool:
    """Whether a failed batch may be one call's doing (an error reply, not the connection)."""
    return isinstance(error, ResponseError)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
