"""Opt-in waiting for room when a queue sheds load: retry `Overloaded` with full jitter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import retry_if_exception_type

from framework.errors import Overloaded
from framework.retrying import OVERLOAD, Backoff

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
        async for retrying in self.policy.retrying(
            retry_if_exception_type(Overloaded), sleep=self.sleep
        ):
            with retrying:
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover
