"""Opt-in waiting for room when a queue sheds load: retry `Overloaded` with full jitter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from framework.errors import Overloaded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryOnOverload:
    """Retry a send refused by a full queue: exponential backoff with full jitter.

    Gives up (re-raising `Overloaded`) once `within` seconds have passed.
    """

    within: float = 30.0
    initial: float = 0.05
    max_delay: float = 2.0

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        async for retrying in AsyncRetrying(
            retry=retry_if_exception_type(Overloaded),
            wait=wait_random_exponential(multiplier=self.initial, max=self.max_delay),
            stop=stop_after_delay(self.within),
            reraise=True,
        ):
            with retrying:
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover
