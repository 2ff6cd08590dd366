"""RateLimit: the GCRA arithmetic on a fake clock, waiting or refusing, and what happens
when its Redis is unreachable (no broker, no Redis)."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from framework import (
    BreakerState,
    CircuitBreaker,
    Command,
    Context,
    RateLimit,
    RateLimited,
    RetryLater,
    Worker,
)
from framework.resilience.rate_core import Decision, LocalBucket, RatePolicy, gcra
from framework.testing import MemoryBus


class Job(Command):
    type_name = "tests.rate_limit.Job"
    n: int


class FakeTime:
    """A clock and a sleep that advances it: waiting costs no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_calls_are_spaced_by_the_interval_after_the_burst() -> None:
    """burst calls go at once, then one every 1/per_second."""
    bucket = LocalBucket(RatePolicy(per_second=10, burst=3, max_wait=10))
    waits = [bucket.acquire(0.0).wait for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_a_turn_beyond_max_wait_is_refused_and_not_reserved() -> None:
    """A refused call says when a turn is due and takes no turn from the others."""
    policy = RatePolicy(per_second=10, burst=1, max_wait=0.15)
    bucket = LocalBucket(policy)
    assert [bucket.acquire(0.0) for _ in range(2)] == [Decision(True, 0), Decision(True, 0.1)]
    refused = bucket.acquire(0.0)
    assert not refused.granted and refused.wait == pytest.approx(0.2)
    granted = bucket.acquire(0.1)
    assert granted.granted and granted.wait == pytest.approx(0.1)


def test_unused_time_does_not_accumulate_beyond_the_burst() -> None:
    """After a quiet hour only `burst` calls go at once."""
    bucket = LocalBucket(RatePolicy(per_second=1, burst=2, max_wait=0))
    assert [bucket.acquire(3600.0).granted for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("per_second", [0.5, 7.0, 50.0])
def test_no_window_lets_through_more_than_burst_plus_rate_times_its_length(
    per_second: float,
) -> None:
    """Over any window W at most burst + per_second * W calls go (callers arriving at once)."""
    policy = RatePolicy(per_second=per_second, burst=3, max_wait=1e6)
    tat, starts = -math.inf, []
    for _ in range(200):
        decision, tat = gcra(tat, 0.0, policy)
        starts.append(decision.wait)
    for window in (0.5, 1.0, 3.0):
        most = max(sum(1 for s in starts if a <= s < a + window) for a in starts)
        assert most <= policy.burst + per_second * window + 1e-9


@pytest.mark.parametrize(
    "kwargs",
    [{"per_second": 0}, {"per_second": -1}, {"burst": 0}, {"burst": 1.5}, {"max_wait": -1}],
)
def test_bad_settings_are_refused_with_the_name_of_the_setting(kwargs: dict[str, float]) -> None:
    settings = {"per_second": 10.0, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RateLimit("x", **settings)  # type: ignore[arg-type]


async def test_a_caller_waits_for_its_turn_within_max_wait() -> None:
    """`async with limit:` sleeps until the turn; nothing is refused within max_wait."""
    time = FakeTime()
    limit = RateLimit("api", per_second=4, max_wait=1.0, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        async with limit:
            pass
    assert time.slept == pytest.approx([0.25, 0.25])
    assert (limit.stats.immediate, limit.stats.waited, limit.stats.refused) == (1, 2, 0)


async def test_a_caller_beyond_max_wait_is_deferred_with_retry_later() -> None:
    """Over the limit and beyond max_wait: RateLimited (a RetryLater) with the time to a turn."""
    time = FakeTime()
    limit = RateLimit("api", per_second=2, max_wait=0.0, clock=time.clock, sleep=time.sleep)

    @limit
    async def call() -> str:
        return "ok"

    assert await call() == "ok"
    with pytest.raises(RateLimited) as caught:
        await call()
    assert isinstance(caught.value, RetryLater) and caught.value.after == pytest.approx(0.5)
    assert "'api'" in str(caught.value) and limit.stats.refused == 1


async def test_redis_down_falls_back_to_the_local_bucket_and_says_so() -> None:
    """Default "local": an unreachable Redis is counted, and the process limits itself."""
    time = FakeTime()
    limit = RateLimit(
        "down",
        per_second=2,
        max_wait=0.0,
        redis_url="redis://127.0.0.1:1/0",
        redis_timeout=0.2,
        clock=time.clock,
        sleep=time.sleep,
    )
    try:
        async with limit:
            pass
        with pytest.raises(RateLimited):  # the local bucket still limits
            await limit.acquire()
    finally:
        await limit.aclose()
    assert limit.stats.redis_failures == 1  # tried again only after redis_retry
    assert not limit.stats.shared


async def test_redis_down_with_defer_refuses_every_call_until_it_answers() -> None:
    """ "defer" (fail closed): every call raises RateLimited while Redis is away."""
    time = FakeTime()
    limit = RateLimit(
        "down",
        per_second=100,
        redis_url="redis://127.0.0.1:1/0",
        redis_down="defer",
        redis_timeout=0.2,
        redis_retry=3.0,
        clock=time.clock,
        sleep=time.sleep,
    )
    try:
        with pytest.raises(RateLimited) as caught:
            await limit.acquire()
    finally:
        await limit.aclose()
    assert caught.value.after == pytest.approx(3.0)


def test_redis_down_must_be_local_or_defer() -> None:
    with pytest.raises(ValueError, match="redis_down"):
        RateLimit("x", per_second=1, redis_url="redis://h", redis_down="open")  # type: ignore[arg-type]


async def test_a_refusal_inside_a_breaker_says_nothing_about_the_dependency() -> None:
    """RateLimited raised inside `async with breaker:` is not a failure: no call was made."""
    time = FakeTime()
    breaker = CircuitBreaker("api", failure_threshold=1, clock=time.clock)
    limit = RateLimit("api", per_second=1, max_wait=0.0, clock=time.clock, sleep=time.sleep)
    await limit.acquire()
    with pytest.raises(RateLimited):
        async with breaker, limit:
            pass
    assert breaker.state is BreakerState.CLOSED


async def test_on_the_memory_bus_a_limited_worker_slows_down_without_losing_work(
    test_bus: MemoryBus,
) -> None:
    """With the bus's virtual clock, refused calls wait in the delay queues: 6 messages at
    2/s take >= 2.5 virtual seconds, none is dead-lettered, none handled twice."""
    limit = RateLimit("mem", per_second=2, max_wait=0.0, clock=lambda: test_bus.now)
    stamps: list[float] = []

    class Limited(Worker):
        queue = "mem.limited"
        retry_base_delay = 0.1
        retry_max_delay = 2.0
        rate_limits = (limit,)

        async def handle(self, msg: Job, ctx: Context) -> None:
            async with limit:
                stamps.append(test_bus.now)

    await test_bus.start_worker(Limited)
    for n in range(6):
        await test_bus.send(Job(n=n))
    await asyncio.wait_for(test_bus.drain(), 5)
    assert len(stamps) == 6 and test_bus.dead_letters("mem.limited") == []
    ordered = sorted(stamps)
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(ordered)), ordered
    assert limit.stats.refused > 0
