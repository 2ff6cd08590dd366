"""Deadlines: absolute epoch-ms stamps; pure arithmetic, clock passed in.

Clock-skew assumption: the sender stamps `fw-deadline` from its own wall clock and the worker
compares it with its own, so the two hosts' clocks must agree to within
`Settings.clock_skew_tolerance` (default 1 s; NTP-synced hosts are well inside that). The
tolerance leans towards doing the work: a message counts as expired only when `now` is past
its deadline by more than the tolerance, and a handler's budget runs to the deadline plus
the tolerance. A worker whose clock runs fast by more than that expires
work early; one that runs slow handles work its caller has already given up on.

The AMQP `expiration` the sender sets alongside (the time left at send) is relative and
measured by the broker, so the broker's own dropping of queued messages needs no clock
agreement; it only starts counting when the message reaches the queue.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def combine_deadline(now_ms: int, deadline: datetime | None, ttl: float | None) -> int | None:
    """The earlier of an absolute deadline and now + ttl seconds (None when neither)."""
    candidates = []
    if deadline is not None:
        candidates.append(to_epoch_ms(deadline))
    if ttl is not None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        candidates.append(now_ms + int(ttl * 1000))
    return min(candidates) if candidates else None


def is_expired(deadline_ms: int | None, now_ms: int, tolerance: float = 0.0) -> bool:
    """True when the deadline passed more than `tolerance` seconds ago."""
    return deadline_ms is not None and now_ms > deadline_ms + int(tolerance * 1000)


def handler_budget(
    timeout: float, deadline_ms: int | None, now_ms: int, tolerance: float = 0.0
) -> float:
    """Seconds a handler may run: its timeout, never extending past the message deadline."""
    if deadline_ms is None:
        return timeout
    remaining = (deadline_ms + int(tolerance * 1000) - now_ms) / 1000
    return max(min(timeout, remaining), 0.0)
