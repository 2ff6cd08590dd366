"""`RateLimit`: at most N calls per second to one dependency, shared by every replica.

Guards a call the way a `CircuitBreaker` does (`async with limit:` or `@limit`). A caller
whose turn is at most `max_wait` away waits for it; one further out raises `RateLimited`
(a `RetryLater`), so its message goes back to the delay queues without burning an attempt
and the worker's consumption slows down instead of holding messages in memory.

Without `redis_url` each process has its own bucket (framework.resilience.rate_core). With it, every
process using the same name and URL shares one bucket in Redis (framework.resilience.rate_redis).
When Redis fails or does not answer within `redis_timeout`, `redis_down` decides:
"local" (the default: fail open to each process's own bucket at the full rate, so N
replicas may together reach N times the limit until Redis is back) or "defer" (fail
closed: every call raises `RateLimited` until Redis answers again). Either way the switch
is logged once each way and counted (`stats`, `framework_rate_limit_*` metrics); Redis is
tried again at most every `redis_retry` seconds meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, ParamSpec, TypeVar

import structlog

from framework.errors import RateLimited
from framework.resilience.rate_core import Decision, LocalBucket, RatePolicy
from framework.resilience.rate_redis import SharedBucket

P = ParamSpec("P")
R = TypeVar("R")
RedisDown = Literal["local", "defer"]

_log = structlog.get_logger("framework.rate_limit")


@dataclass
class RateLimitStats:
    """What a limit did: calls let through at once, after waiting, refused; Redis failures."""

    immediate: int = 0
    waited: int = 0
    refused: int = 0
    redis_failures: int = 0
    shared: bool = False  # the last decision came from Redis


class RateLimit:
    """At most `per_second` calls (`burst` at once) to the dependency `name`."""

    def __init__(
        self,
        name: str,
        *,
        per_second: float,
        burst: int = 1,
        max_wait: float = 1.0,
        redis_url: str | None = None,
        redis_down: RedisDown = "local",
        redis_timeout: float = 0.5,
        redis_retry: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if redis_down not in ("local", "defer"):
            raise ValueError(f'redis_down must be "local" or "defer", got {redis_down!r}')
        self.name = name
        self.policy = RatePolicy(per_second, burst, max_wait)
        self.stats = RateLimitStats()
        self._local = LocalBucket(self.policy)
        self._shared = (
            None if redis_url is None else SharedBucket(redis_url, name, self.policy, redis_timeout)
        )
        self._redis_down = redis_down
        self._redis_retry = redis_retry
        self._retry_redis_at: float | None = None  # while Redis is failing
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        mode = "shared" if self._shared is not None else "local"
        return f"RateLimit({self.name!r}, per_second={self.policy.per_second:g}, {mode})"

    async def acquire(self) -> None:
        """Wait for this call's turn, or raise `RateLimited` if it is beyond `max_wait`."""
        decision = await self._decide()
        if not decision.granted:
            self.stats.refused += 1
            raise RateLimited(self.name, decision.wait, self.policy.per_second)
        if decision.wait > 0:
            self.stats.waited += 1
            await self._sleep(decision.wait)
        else:
            self.stats.immediate += 1

    async def __aenter__(self) -> RateLimit:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to give back: a turn is spent when taken."""

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an async function so every call takes a turn first."""

        @functools.wraps(func)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            await self.acquire()
            return await func(*args, **kwargs)

        return limited

    async def aclose(self) -> None:
        """Close this event loop's Redis connection, if any (opened again when needed)."""
        if self._shared is not None:
            await self._shared.aclose()

    async def _decide(self) -> Decision:
        now = self._clock()
        shared = self._shared
        if shared is None:
            return self._local.acquire(now)
        if self._retry_redis_at is None or now >= self._retry_redis_at:
            try:
                decision = await shared.acquire()
            except Exception as exc:  # noqa: BLE001 - any Redis failure: the documented fallback
                self._redis_failed(now, exc)
            else:
                self._redis_answered()
                return decision
        if self._redis_down == "defer":
            return Decision(False, max(self._redis_retry_in(now), self.policy.interval))
        return self._local.acquire(now)

    def _redis_failed(self, now: float, exc: Exception) -> None:
        self.stats.redis_failures += 1
        self.stats.shared = False
        if self._retry_redis_at is None:
            _log.warning(
                "rate_limit.redis_unavailable",
                limit=self.name,
                error=repr(exc),
                fallback="each process's own bucket (the combined rate may exceed the limit)"
                if self._redis_down == "local"
                else "every call deferred until Redis answers",
            )
        self._retry_redis_at = now + self._redis_retry

    def _redis_answered(self) -> None:
        self.stats.shared = True
        if self._retry_redis_at is not None:
            self._retry_redis_at = None
            _log.info("rate_limit.redis_recovered", limit=self.name)

    def _redis_retry_in(self, now: float) -> float:
        return 0.0 if self._retry_redis_at is None else max(self._retry_redis_at - now, 0.0)
