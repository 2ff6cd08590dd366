"""Circuit breakers: stop calling a failing dependency, probe it, resume when it recovers.

`BreakerCore` is the pure state machine (clock passed in, unit-tested without sleeping);
`CircuitBreaker` wraps it for use around a call (`async with breaker:` or `@breaker`) and
tells listeners about transitions, which is how a worker pauses its consumer while open.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ParamSpec, TypeVar

from framework.errors import FrameworkError, RateLimited

P = ParamSpec("P")
R = TypeVar("R")
Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitOpenError(FrameworkError):
    """The breaker is open: the call was not made. Transient: the message is retried later."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_in:.1f}s")
        self.breaker = name
        self.retry_in = retry_in


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When to open and how to probe.

    Opens after `failure_threshold` consecutive failures, or when at least `min_calls` calls
    in the last `window` seconds failed at a rate of `failure_rate` or more (if set).
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_max_calls: int = 1
    failure_rate: float | None = None
    window: float = 60.0
    min_calls: int = 10

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_max_calls < 1 or self.min_calls < 1:
            raise ValueError("failure_threshold, half_open_max_calls and min_calls must be >= 1")
        if self.reset_timeout <= 0 or self.window <= 0:
            raise ValueError("reset_timeout and window must be positive")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be within (0, 1]")


class BreakerCore:
    """The pure state machine. Every method takes `now`; nothing here sleeps or does I/O."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._probes_in_flight = 0
        self._calls: deque[tuple[float, bool]] = deque()

    def state(self, now: float) -> BreakerState:
        """Current state; an open breaker turns half-open once `reset_timeout` has passed."""
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.policy.reset_timeout:
            self._state = BreakerState.HALF_OPEN
            self._probes_in_flight = 0
        return self._state

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker half-opens (0 when not open)."""
        if self.state(now) is not BreakerState.OPEN:
            return 0.0
        return max(self._opened_at + self.policy.reset_timeout - now, 0.0)

    def try_acquire(self, now: float) -> bool:
        """May a call go ahead? Half-open admits at most `half_open_max_calls` probes."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        limit = self.policy.half_open_max_calls
        if state is BreakerState.HALF_OPEN and self._probes_in_flight < limit:
            self._probes_in_flight += 1
            return True
        return False

    def release(self, now: float) -> None:
        """A call ended with neither success nor failure (cancelled): free its probe slot."""
        if self.state(now) is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def record_success(self, now: float) -> None:
        self._remember(now, ok=True)
        self._consecutive_failures = 0
        if self.state(now) is BreakerState.HALF_OPEN:
            self._close()

    def record_failure(self, now: float) -> None:
        self._remember(now, ok=False)
        self._consecutive_failures += 1
        state = self.state(now)
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._should_open()
        ):
            self._open(now)

    def _should_open(self) -> bool:
        if self._consecutive_failures >= self.policy.failure_threshold:
            return True
        rate = self.policy.failure_rate
        if rate is None or len(self._calls) < self.policy.min_calls:
            return False
        failures = sum(1 for _, ok in self._calls if not ok)
        return failures / len(self._calls) >= rate

    def _remember(self, now: float, *, ok: bool) -> None:
        self._calls.append((now, ok))
        while self._calls and self._calls[0][0] < now - self.policy.window:
            self._calls.popleft()

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probes_in_flight = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._calls.clear()


Listener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class CircuitBreaker:
    """Guards calls to one dependency. Use `async with breaker:` or decorate with `@breaker`.

    Failures are exceptions of `failure_types` (default: any Exception) raised inside.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = BreakerPolicy(
            failure_threshold, reset_timeout, half_open_max_calls, failure_rate, window, min_calls
        )
        self._core = BreakerCore(self.policy)
        self._clock = clock
        self._failure_types = failure_types
        self._listeners: list[Listener] = []
        self._last_state = BreakerState.CLOSED

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"

    @property
    def state(self) -> BreakerState:
        """The state now (reading it may half-open an expired open breaker)."""
        current = self._core.state(self._clock())
        self._notify(current)
        return current

    def retry_in(self) -> float:
        return self._core.retry_in(self._clock())

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(breaker, old, new)` on every state transition."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def __aenter__(self) -> CircuitBreaker:
        now = self._clock()
        if not self._core.try_acquire(now):
            self._notify(self._core.state(now))
            raise CircuitOpenError(self.name, self._core.retry_in(now))
        self._notify(self._core.state(now))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        now = self._clock()
        if exc is None:
            self._core.record_success(now)
        elif isinstance(exc, RateLimited):  # our own limit refused: the call was not made
            self._core.release(now)
        elif isinstance(exc, self._failure_types):
            self._core.record_failure(now)
        elif isinstance(exc, Exception):
            self._core.record_success(now)  # not a dependency failure (e.g. a bad input)
        else:
            self._core.release(now)  # cancelled: says nothing about the dependency
        self._notify(self._core.state(now))

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an async function so every call goes through this breaker."""

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await func(*args, **kwargs)

        return guarded

    def _notify(self, current: BreakerState) -> None:
        if current is self._last_state:
            return
        previous, self._last_state = self._last_state, current
        for listener in list(self._listeners):
            listener(self, previous, current)
