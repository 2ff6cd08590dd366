"""Retry policies of the framework's own I/O, in one place, by name.

Each policy is a small frozen `Backoff`: a nominal delay doubling from `first` per failure up
to `cap`, spread by a jitter band, and when to give up (`attempts`, `within`). `delay` is a
pure function of the failure count and a random draw, so schedules are tested without
sleeping; `retrying` hands the same schedule to tenacity.

The retry schedule of *messages* (delay queues, per-worker `retry_base_delay` /
`retry_max_delay`) is `framework.resilience.backoff.RetryPolicy`; the policies here decide how the
framework retries talking to the broker and its databases.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, stop_after_delay, stop_never
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from framework.resilience.backoff import RandomSource


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: after failure n (1-based) wait
    `min(cap, first * 2**(n-1))` times a factor drawn from `jitter` = (low, high).

    (0, 1) is full jitter (tenacity's `wait_random_exponential`); (1, 1) none. Gives up after
    `attempts` attempts or once `within` seconds have passed, whichever comes first (None:
    that limit does not apply).
    """

    first: float
    cap: float
    jitter: tuple[float, float] = (0.0, 1.0)
    attempts: int | None = None
    within: float | None = None

    def __post_init__(self) -> None:
        low, high = self.jitter
        if self.first <= 0 or self.cap < self.first:
            raise ValueError(f"backoff needs 0 < first <= cap (first={self.first}, cap={self.cap})")
        if not 0 <= low <= high:
            raise ValueError(f"jitter must be (low, high) with 0 <= low <= high, not {self.jitter}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")

    def nominal(self, failures: int) -> float:
        """The delay after failure `failures` before jitter: doubling, at most `cap`."""
        exponent = min(max(failures - 1, 0), 62)
        return min(self.cap, self.first * 2.0**exponent)

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after failure `failures` (1-based) for a draw `rand` in [0, 1]."""
        low, high = self.jitter
        return self.nominal(failures) * (low + (high - low) * rand)

    def wait(self, rand: RandomSource = random.random) -> Callable[[RetryCallState], float]:
        """This schedule as a tenacity `wait` (the attempt that just failed is the count)."""
        return lambda state: self.delay(state.attempt_number, rand())

    def stop(self) -> stop_base:
        """This policy's give-up condition as a tenacity `stop`."""
        stops: list[stop_base] = []
        if self.attempts is not None:
            stops.append(stop_after_attempt(self.attempts))
        if self.within is not None:
            stops.append(stop_after_delay(self.within))
        if not stops:
            return stop_never
        combined = stops[0]
        for more in stops[1:]:
            combined = combined | more
        return combined

    def retrying(
        self,
        retry: retry_base,
        *,
        rand: RandomSource = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> AsyncRetrying:
        """A tenacity loop over this policy, retrying what `retry` accepts, re-raising the
        last error when it gives up (`sleep` and `rand` injectable for tests)."""
        return AsyncRetrying(
            retry=retry, wait=self.wait(rand), stop=self.stop(), sleep=sleep, reraise=True
        )


# Opening a broker connection (each attempt starts at the next node URL); `attempts` is
# FRAMEWORK_CONNECT_ATTEMPTS at the call site.
CONNECT = Backoff(first=0.2, cap=3.0, attempts=5)
# A publish interrupted by a reconnect, retried on a fresh channel; `within` is the publish's
# own time bound at the call site.
PUBLISH = Backoff(first=0.05, cap=2.0)
# Moving a delivery to its retry or dead-letter queue (settle): the first try is made
# without retry machinery (the hot path), the rest through this policy.
SETTLE_MOVE = Backoff(first=0.5, cap=5.0, attempts=3)
# `bus.send(..., retry=RetryOnOverload())`: waiting for room in a full queue.
OVERLOAD = Backoff(first=0.05, cap=2.0, within=30.0)
# Subscribing again after the subscription was lost (the worker keeps trying, never gives up).
RESUBSCRIBE = Backoff(first=0.2, cap=5.0, jitter=(0.5, 1.5))
# The robust connection's pause between reconnect attempts (never gives up).
RECONNECT = Backoff(first=0.5, cap=15.0, jitter=(0.5, 1.0))
# An outbox row whose publish failed, tried again by a later sweep (no jitter: the sweep
# itself spreads them).
OUTBOX_ROW = Backoff(first=0.5, cap=30.0, jitter=(1.0, 1.0))


def outbox_sweep(poll_interval: float) -> Backoff:
    """The outbox relay's pause after a failed sweep (database down): twice the poll
    interval, doubling up to 16 times it, never above 5 s."""
    cap = min(5.0, 16 * poll_interval)
    return Backoff(first=min(2 * poll_interval, cap), cap=cap, jitter=(1.0, 1.0))
