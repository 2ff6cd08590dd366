"""Redis idempotency store: shared by every replica; leases and retention are Redis TTLs.

A key's value is a random lease token while a worker holds it and `done` once handled.
Claiming is one Lua script (SET NX PX, then read the winner) so DONE and BUSY are told
apart atomically; releasing deletes only the lease this store took (compare-and-delete),
never a lease another worker took after ours expired. Expiry runs on the Redis clock.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from framework.idempotency.store import ClaimResult

KEY_PREFIX = "fw:idem"
DONE = "done"

_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'claimed' end
if redis.call('GET', KEYS[1]) == 'done' then return 'done' end
return 'busy'
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# fenced: only while the claim still holds it, or once nobody does (the lease expired)
_COMPLETE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
return 1
"""


def redis_key(scope: str, key: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key that records idempotency `key` in `scope` (the consuming queue)."""
    return f"{prefix}:{scope}:{key}"


class RedisStore:
    """Keys as Redis strings under `fw:idem:<scope>:<key>`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._complete = client.register_script(_COMPLETE)
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
        found = await self._claim(keys=[self._key(scope, key)], args=[mine, _ms(lease)])
        result = ClaimResult(found)
        if result is ClaimResult.CLAIMED and token is None:
            self._tokens[(scope, key)] = mine
        return result

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        return bool(await self._renew(keys=[self._key(scope, key)], args=[token, _ms(lease)]))

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if token is None:
            self._tokens.pop((scope, key), None)
            await self._client.set(self._key(scope, key), DONE, px=_ms(retention))
            return None
        done = await self._complete(keys=[self._key(scope, key)], args=[token, _ms(retention)])
        return bool(done)

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        mine = token or self._tokens.pop((scope, key), None)
        if mine is not None:
            await self._release(keys=[self._key(scope, key)], args=[mine])

    async def close(self) -> None:
        await self._client.aclose()

    def _key(self, scope: str, key: str) -> str:
        return redis_key(scope, key, self._prefix)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
