"""Watching the event loop for stalls: a handler that blocks it stops every other delivery,
heartbeat and lease renewal of the worker, so stalls are measured, logged and counted.

A task sleeps `interval` s at a time; how much later than asked it wakes is the loop's lag.
Lags of `threshold` s or more count as stalls and are logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

LagObserver = Callable[[float], None]


class LoopLagWatchdog:
    """Measures the loop's lag every `interval` s while `run()` runs (an owned task)."""

    def __init__(self, *, interval: float = 0.25, threshold: float = 1.0) -> None:
        self.interval = interval
        self.threshold = threshold
        self.stalls = 0
        self.last_lag = 0.0
        self.max_lag = 0.0
        self.observers: list[LagObserver] = []
        self._log = structlog.get_logger("framework.eventloop")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.observe(loop.time() - started - self.interval)

    def observe(self, lag: float) -> None:
        """Record one measured lag (seconds late)."""
        lag = max(lag, 0.0)
        self.last_lag = lag
        self.max_lag = max(self.max_lag, lag)
        if lag >= self.threshold:
            self.stalls += 1
            self._log.warning(
                "eventloop.stalled",
                lag_s=round(lag, 3),
                stalls=self.stalls,
                hint="something blocked the event loop (sync I/O or CPU work in "
                "a handler?): run it with asyncio.to_thread; a stall "
                "longer than the idempotency lease lets another worker "
                "claim a key it holds",
            )
        for observer in self.observers:
            observer(lag)
