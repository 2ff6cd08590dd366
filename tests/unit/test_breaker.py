"""Circuit breaker transitions with a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from framework.resilience.breaker import (
    BreakerCore,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures() -> None:
    """Closed -> open after failure_threshold consecutive failures."""
    core = BreakerCore(BreakerPolicy(failure_threshold=3, reset_timeout=10))
    for _ in range(2):
        core.record_failure(0)
    assert core.state(0) is BreakerState.CLOSED
    core.record_failure(0)
    assert core.state(0) is BreakerState.OPEN
    assert not core.try_acquire(1)


def test_success_resets_consecutive_count() -> None:
    """A success in between keeps the breaker closed."""
    core = BreakerCore(BreakerPolicy(failure_threshold=2))
    core.record_failure(0)
    core.record_success(0)
    core.record_failure(0)
    assert core.state(0) is BreakerState.CLOSED


def test_opens_on_failure_rate_over_window() -> None:
    """With failure_rate set, enough calls failing at that rate open it."""
    core = BreakerCore(
        BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=4, window=10)
    )
    for ok in (True, False, True, False):
        (core.record_success if ok else core.record_failure)(1)
    assert core.state(1) is BreakerState.OPEN


def test_old_calls_leave_the_window() -> None:
    """Failures older than the window no longer count towards the rate."""
    fresh = BreakerCore(
        BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=4, window=10)
    )
    for _ in range(3):
        fresh.record_failure(0)
    assert fresh.state(0) is BreakerState.CLOSED  # below min_calls
    for t in (20, 21, 22, 23):
        fresh.record_success(t)  # the three failures at t=0 are out of the window by now
    assert fresh.state(23) is BreakerState.CLOSED


def test_half_open_after_reset_timeout_admits_limited_probes() -> None:
    """Open -> half-open after reset_timeout; only half_open_max_calls probes go through."""
    core = BreakerCore(BreakerPolicy(failure_threshold=1, reset_timeout=5, half_open_max_calls=2))
    core.record_failure(0)
    assert core.retry_in(2) == 3
    assert core.state(5) is BreakerState.HALF_OPEN
    assert core.try_acquire(5) and core.try_acquire(5)
    assert not core.try_acquire(5)


def test_probe_success_closes() -> None:
    """A successful probe closes the breaker."""
    core = BreakerCore(BreakerPolicy(failure_threshold=1, reset_timeout=5))
    core.record_failure(0)
    assert core.try_acquire(6)
    core.record_success(6)
    assert core.state(6) is BreakerState.CLOSED


def test_probe_failure_reopens() -> None:
    """A failed probe opens the breaker again for another reset_timeout."""
    core = BreakerCore(BreakerPolicy(failure_threshold=1, reset_timeout=5))
    core.record_failure(0)
    assert core.try_acquire(6)
    core.record_failure(6)
    assert core.state(6) is BreakerState.OPEN
    assert core.state(10) is BreakerState.OPEN
    assert core.state(11) is BreakerState.HALF_OPEN


async def test_context_manager_fails_fast_and_notifies() -> None:
    """`async with breaker` raises CircuitOpenError while open; listeners see transitions."""
    clock = FakeClock()
    breaker = CircuitBreaker("gateway", failure_threshold=2, reset_timeout=10, clock=clock)
    transitions: list[tuple[str, str]] = []
    breaker.add_listener(lambda b, old, new: transitions.append((old.value, new.value)))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            async with breaker:
                raise ConnectionError("down")
    with pytest.raises(CircuitOpenError, match="'gateway' is open"):
        async with breaker:
            pass
    clock.now += 10
    async with breaker:
        pass
    assert transitions == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


async def test_decorator_guards_calls() -> None:
    """@breaker wraps an async function."""
    breaker = CircuitBreaker("db", failure_threshold=1, clock=FakeClock())

    @breaker
    async def query(fail: bool) -> int:
        if fail:
            raise TimeoutError
        return 1

    assert await query(False) == 1
    with pytest.raises(TimeoutError):
        await query(True)
    with pytest.raises(CircuitOpenError):
        await query(False)


async def test_cancelled_probe_frees_its_slot() -> None:
    """A cancelled probe neither closes nor reopens; another probe may go."""
    clock = FakeClock()
    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout=1, clock=clock)
    with pytest.raises(RuntimeError):
        async with breaker:
            raise RuntimeError
    clock.now += 1

    async def probe() -> None:
        async with breaker:
            await asyncio.sleep(10)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is BreakerState.HALF_OPEN
    async with breaker:
        pass
    assert state_now(breaker) is BreakerState.CLOSED


def test_invalid_policy() -> None:
    """Nonsense settings fail at construction."""
    with pytest.raises(ValueError, match="failure_rate"):
        BreakerPolicy(failure_rate=2)


def state_now(breaker: CircuitBreaker) -> BreakerState:
    """The state as it is now (mypy would keep an earlier narrowing of `breaker.state`)."""
    return breaker.state
