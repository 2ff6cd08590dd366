"""Logging a repeated error once per interval, with how often it happened (pure; no I/O).

While a store or broker is down the same error comes from every delivery; one line per
interval with a count says as much as thousands of identical lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

Clock = Callable[[], float]


class LogThrottle:
    """`admit(key)` says whether to log now: None (suppressed) or how many were suppressed
    since the last admitted line of `key` (0 for the first)."""

    def __init__(
        self, interval: float = 10.0, clock: Clock = time.monotonic, max_keys: int = 1024
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged at, suppressed)

    def admit(self, key: str) -> int | None:
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._seen) >= self._max_keys:
            self._seen.clear()  # bounded: many distinct errors are logged, not remembered
        self._seen[key] = (now, 0)
        return 0 if last is None else last[1]


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def without_numbers(text: str) -> str:
    """`text` with its numbers replaced by `#`: the key of errors that differ only in them
    ("retry after 0.31s: rate limit 'api' (50/s) reached" and "... 0.27s ...")."""
    return _NUMBER.sub("#", text)
