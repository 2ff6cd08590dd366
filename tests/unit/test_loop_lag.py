"""The event-loop lag watchdog measures how late the loop runs, counts and logs stalls."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from framework.consume.loop_lag import LoopLagWatchdog


def test_lag_below_threshold_is_recorded_not_counted() -> None:
    watchdog = LoopLagWatchdog(threshold=1.0)
    seen: list[float] = []
    watchdog.observers.append(seen.append)
    watchdog.observe(0.2)
    assert (watchdog.stalls, watchdog.last_lag, seen) == (0, 0.2, [0.2])


def test_stall_is_counted_and_logged() -> None:
    """A lag at or over the threshold counts as a stall and says what to do."""
    watchdog = LoopLagWatchdog(threshold=1.0)
    with capture_logs() as logs:
        watchdog.observe(2.5)
    assert watchdog.stalls == 1 and watchdog.max_lag == 2.5
    (line,) = logs
    assert line["event"] == "eventloop.stalled" and "to_thread" in line["hint"]


async def test_a_blocked_loop_is_seen() -> None:
    """Blocking the loop for 0.3 s is measured as a stall of about that long."""
    watchdog = LoopLagWatchdog(interval=0.01, threshold=0.2)
    stalled = asyncio.Event()
    watchdog.observers.append(lambda lag: stalled.set() if lag >= 0.2 else None)
    task = asyncio.create_task(watchdog.run())
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - the blocked loop under test
    await asyncio.wait_for(stalled.wait(), 5)
    task.cancel()
    assert watchdog.stalls == 1 and 0.2 <= watchdog.max_lag < 2
