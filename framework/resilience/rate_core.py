"""The arithmetic of a rate limit: GCRA (a token bucket kept as one number), pure.

The state is the theoretical arrival time `tat`: when the bucket would be full again. A
call at `now` is due at `max(tat, now) + interval - burst * interval`; if that is at most
`max_wait` away it is granted (the caller waits until then) and `tat` moves on by one
interval, otherwise it is refused with the wait it would have needed. Over any window of
W seconds at most `burst + per_second * W` calls are let through. The same formula runs in
Redis (framework.resilience.rate_redis) to share one limit between processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """`per_second` calls on average, `burst` at once after a quiet spell; a caller waits at
    most `max_wait` seconds for its turn before it is refused."""

    per_second: float
    burst: int = 1
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.per_second, int | float) and 0 < self.per_second < math.inf):
            raise ValueError(f"per_second must be a positive number, got {self.per_second!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {self.burst!r}")
        if not (isinstance(self.max_wait, int | float) and 0 <= self.max_wait < math.inf):
            raise ValueError(f"max_wait must be a number >= 0 (seconds), got {self.max_wait!r}")

    @property
    def interval(self) -> float:
        """Seconds between two calls at the steady rate."""
        return 1.0 / self.per_second


@dataclass(frozen=True, slots=True)
class Decision:
    """`granted`: go after `wait` seconds. Refused: a token is due in `wait` seconds."""

    granted: bool
    wait: float


def gcra(tat: float, now: float, policy: RatePolicy) -> tuple[Decision, float]:
    """Decide one call; returns the decision and the new `tat`."""
    start = max(tat, now)
    wait = max(start + policy.interval - policy.burst * policy.interval - now, 0.0)
    if wait > policy.max_wait:
        return Decision(False, wait), tat
    return Decision(True, wait), start + policy.interval


class LocalBucket:
    """One process's bucket (its `tat`); every method takes `now`."""

    def __init__(self, policy: RatePolicy) -> None:
        self.policy = policy
        self._tat = -math.inf

    def acquire(self, now: float) -> Decision:
        decision, self._tat = gcra(self._tat, now, self.policy)
        return decision
