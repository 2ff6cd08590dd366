"""Waiting in tests for a condition nothing signals (worker counters, queue contents)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02
) -> None:
    """Return once `condition()` holds; raise `TimeoutError` after `timeout` seconds.

    For state that has no event to await (e.g. `worker.stats`, updated after settlement);
    prefer awaiting an `asyncio.Event` set by the handler where there is one.
    """
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - nothing signals these counters
            await asyncio.sleep(interval)
