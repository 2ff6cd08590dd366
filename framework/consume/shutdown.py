"""The one time budget of a worker's shutdown, from the stop request to the closed bus.

`grace` seconds for in-flight work: pausing the consumer, handlers finishing, settlements
(confirmed moves, with their retries) completing. Whatever is still running at the end of
the grace is cancelled without an ack, so the broker delivers it again (idempotency absorbs
a move that was confirmed but not acked). Then at most `CLOSE_MARGIN` seconds to flush acks
and close the channel and the connections, which a stalled broker may never answer.
So a whole shutdown takes at most `grace + CLOSE_MARGIN` seconds: the orchestrator's kill
timeout (Kubernetes `terminationGracePeriodSeconds`) must be longer than that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

CLOSE_MARGIN = 2.0  # seconds after the grace for acks, channel and connection closes


@dataclass(frozen=True, slots=True)
class ShutdownBudget:
    """Deadlines of one shutdown, on the `clock` it was started with."""

    grace: float
    started: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, grace: float, clock: Callable[[], float] = time.monotonic) -> ShutdownBudget:
        return cls(max(grace, 0.0), clock(), clock)

    def remaining(self) -> float:
        """Seconds left for in-flight work (0 once the grace is over)."""
        return max(self.started + self.grace - self.clock(), 0.0)

    def closing_remaining(self) -> float:
        """Seconds left until the whole shutdown must be over (grace + `CLOSE_MARGIN`)."""
        return max(self.started + self.grace + CLOSE_MARGIN - self.clock(), 0.0)


async def within(awaitable: Awaitable[T], seconds: float, log: Any, event: str) -> T | None:
    """`awaitable`'s result, or None (logged as `event`) if it fails or takes longer than
    `seconds`: closing must not hang on a broker that does not answer."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except Exception as exc:  # noqa: BLE001 - closing must not fail on a dead broker
        log.warning(event, error=repr(exc), bound_s=round(seconds, 2))
        return None
