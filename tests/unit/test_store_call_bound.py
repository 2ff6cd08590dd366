"""`within`: every store call bounded, at no timer cost for calls that never suspend."""

from __future__ import annotations

import asyncio

import pytest

from framework.idempotency.claims import within


async def immediate() -> str:
    return "now"


async def later(delay: float) -> str:
    await asyncio.sleep(delay)
    return "later"


async def failing() -> None:
    await asyncio.sleep(0)
    raise ConnectionError("down")


async def test_call_that_never_suspends_returns_its_value() -> None:
    assert await within(0.1, immediate()) == "now"


async def test_call_that_suspends_and_finishes_in_time_returns_its_value() -> None:
    assert await within(1.0, later(0.01)) == "later"


async def test_call_past_the_bound_times_out() -> None:
    """A call that does not answer within the bound raises TimeoutError (it is cancelled)."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await within(0.05, later(10))
    assert asyncio.get_running_loop().time() - started < 1


async def test_errors_of_the_call_propagate() -> None:
    with pytest.raises(ConnectionError):
        await within(1.0, failing())


async def test_outer_cancellation_is_not_a_timeout() -> None:
    """Cancelling the caller (shutdown) cancels the call and stays a cancellation."""
    task = asyncio.create_task(within(10, later(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
