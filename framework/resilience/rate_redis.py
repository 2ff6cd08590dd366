"""A rate limit shared through Redis: the GCRA of framework.resilience.rate_core in one Lua script.

One script call per acquire, atomic on the server, on the Redis clock (`TIME`), so
processes whose clocks disagree still share one schedule. The key holds `tat` as text
(epoch seconds, microseconds) and expires once the bucket is full again. Clients are kept
per event loop: a redis-py connection belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from framework.resilience.rate_core import Decision, RatePolicy

KEY_PREFIX = "fw:rate"

# KEYS[1]: the limit's key. ARGV: interval, burst * interval, max_wait (seconds).
# Returns {1 granted | 0 refused, wait as text} (Lua numbers would be cut to integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, window, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local wait = tat + interval - window - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, string.format('%.6f', wait)} end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return {1, string.format('%.6f', wait)}
"""


def key_of(name: str) -> str:
    """The Redis key of the limit called `name`."""
    return f"{KEY_PREFIX}:{name}"


class SharedBucket:
    """The bucket `name` in the Redis at `url`; `timeout` bounds every call."""

    def __init__(self, url: str, name: str, policy: RatePolicy, timeout: float) -> None:
        self._url = url
        self._key = key_of(name)
        self._policy = policy
        self._timeout = timeout
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _script(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            import redis.asyncio as aioredis  # the `redis` extra: only a shared limit needs it

            client = aioredis.Redis.from_url(
                self._url,
                decode_responses=True,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            found = self._clients[loop] = (client, client.register_script(_ACQUIRE))
        return found[1]  # EVALSHA, loading the script once if the server lacks it

    async def acquire(self) -> Decision:
        """One round trip; raises on any Redis failure (the caller falls back)."""
        policy = self._policy
        async with asyncio.timeout(self._timeout):
            granted, wait = await self._script()(
                keys=[self._key],
                args=[
                    repr(policy.interval),
                    repr(policy.burst * policy.interval),
                    repr(policy.max_wait),
                ],
            )
        return Decision(bool(int(granted)), float(wait))

    async def aclose(self) -> None:
        """Close this event loop's connection (a later acquire opens a new one)."""
        found = self._clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()
