"""Counting a message's deferrals (`fw-deferrals`), so repeated deferrals back off, and its
retry-laters (`fw-retry-later`), which have a budget of their own.

A deferral (the idempotency store is unavailable, the key is held by another worker) does
not burn an attempt, so the attempt number cannot drive its backoff; the count of deferrals
in a row does. The header is bounded and validated: anything but an int in
[0, MAX_DEFERRALS] reads as 0, and the count written never exceeds MAX_DEFERRALS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.wire import names

MAX_DEFERRALS = 64  # far beyond any cap: 2**63 * base delay is past every retry_max_delay
MAX_RETRY_LATERS = 1_000_000  # a header above this is not ours: read as 0


def deferrals_of(headers: Mapping[str, Any]) -> int:
    """How often the message was deferred so far (0 for a missing or invalid header)."""
    value = headers.get(names.DEFERRALS)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_DEFERRALS else 0


def next_deferrals(deferrals: int) -> int:
    """The count the deferred copy carries."""
    return min(max(deferrals, 0) + 1, MAX_DEFERRALS)


def retry_laters_of(headers: Mapping[str, Any]) -> int:
    """How often the handler raised `RetryLater` for this message so far (0 for a missing
    or invalid header). Failed attempts do not reset it: the budget is per message."""
    value = headers.get(names.RETRY_LATER)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_RETRY_LATERS else 0
