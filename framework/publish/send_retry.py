"""Opt-in waiting for room when a queue sheds load: retry `Overloaded` with full jitter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_before_delay

from framework.errors import Overloaded
from framework.resilience.retrying import OVERLOAD, Backoff

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryOnOverload:
    """Retry a send refused by a full queue: exponential backoff with full jitter.

    Gives up (re-raising `Overloaded`) once `within` seconds have passed. `sleep` is the
    pause between tries (tests pass one that counts them).
    """

    within: float = OVERLOAD.within or 30.0
    initial: float = OVERLOAD.first
    max_delay: float = OVERLOAD.cap
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )

    @property
    def policy(self) -> Backoff:
        """The schedule: `retrying.OVERLOAD` with this instance's numbers."""
        return Backoff(first=self.initial, cap=self.max_delay, within=self.within)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it is not refused for overload, or `within` has passed.

        A refusal that says when room is predicted (`Overloaded.retry_after`, from
        shedding by forecast) pauses at least that long; a refusal whose `retry_after`
        would end past `within` is re-raised at once rather than slept on."""
        policy = self.policy
        backoff = policy.wait()

        def wait(state: RetryCallState) -> float:
            return pause_after(backoff(state), _refusal(state))

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Overloaded),
            wait=wait,
            stop=policy.stop() | stop_before_delay(self.within),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt_state in retrying:
            with attempt_state:
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover


def pause_after(backoff: float, refusal: Overloaded | None) -> float:
    """The pause before the next try: the backoff's, or the refusal's `retry_after` if that
    is longer (a prediction of when the send fits: trying sooner is refused again)."""
    hint = None if refusal is None else refusal.retry_after
    return backoff if hint is None else max(backoff, hint)


def _refusal(state: RetryCallState) -> Overloaded | None:
    outcome = state.outcome
    error = None if outcome is None else outcome.exception()
    return error if isinstance(error, Overloaded) else None
