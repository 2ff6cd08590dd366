"""Retry delays: exponential, jittered, capped; and the delay tiers that carry them.

Pure functions with an injected random source, so schedules are tested without sleeping.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

RandomSource = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a worker retries a transiently failing message."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: float = 0.5
    # `RetryLater`s a message may take (they burn no attempt); one more dead-letters it
    retry_later_limit: int = 20

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.retry_later_limit < 0:
            raise ValueError("retry_later_limit must be at least 0")
        if self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("retry_base_delay must be > 0 and at most retry_max_delay")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def delay(self, failed_attempt: int, rand: RandomSource = random.random) -> float:
        """Seconds to wait before the attempt after `failed_attempt` (1-based).

        The nominal delay doubles per attempt from `base_delay`; jitter spreads it upward by
        up to `jitter` (so no retry comes sooner than the nominal delay) and the result never
        exceeds `max_delay`. Near the cap the band slides down so replicas still spread out.
        """
        exponent = min(max(failed_attempt - 1, 0), 62)
        nominal = self.base_delay * (2.0**exponent)
        high = min(nominal * (1 + self.jitter), self.max_delay)
        low = min(nominal, self.max_delay / (1 + self.jitter))
        low = max(min(low, high), min(self.base_delay, high))
        return low + (high - low) * rand()

    def later(self, after: float, rand: RandomSource = random.random) -> float:
        """Seconds to wait after a `RetryLater(after)`: `after`, jittered upward by up to
        `jitter` of it (replicas told the same `Retry-After` spread out), never less."""
        return after * (1 + self.jitter * rand())

    def max_hop_ms(self) -> int:
        """The longest delay one copy waits in a delay queue; longer waits go in hops."""
        return max(int(self.max_delay * 1000), self.tiers_ms()[-1])

    def tiers_ms(self) -> list[int]:
        """Lower bounds (ms) of the delay queues: base, 2*base, 4*base ... up to max_delay.

        A delay d waits in the tier with the largest bound <= d; every message in a tier has a
        delay below the next bound, so nothing waits behind a much longer delay.
        """
        base_ms = max(int(self.base_delay * 1000), 1)
        max_ms = int(self.max_delay * 1000)
        tiers = [base_ms]
        while tiers[-1] * 2 <= max_ms:
            tiers.append(tiers[-1] * 2)
        return tiers


def tier_for(delay_ms: int, tiers_ms: list[int]) -> int:
    """The tier (its lower bound in ms) a delay of `delay_ms` waits in."""
    index = bisect_right(tiers_ms, delay_ms) - 1
    return tiers_ms[max(index, 0)]


def tier_cap_ms(tier_ms: int, tiers_ms: list[int]) -> int:
    """The longest any message in `tier_ms` may wait: the next tier's bound (or 2x the last)."""
    index = tiers_ms.index(tier_ms)
    return tiers_ms[index + 1] if index + 1 < len(tiers_ms) else tier_ms * 2
