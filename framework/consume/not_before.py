"""`fw-not-before`: the earliest time a message may be handled, for waits longer than the
largest delay tier.

A delay queue holds a message at most about `retry_max_delay` (its per-message TTL; a longer
TTL would block the shorter ones behind it). A longer wait therefore travels in hops: the
copy carries `fw-not-before` (epoch milliseconds, an int like `fw-deadline`, from the
writer's wall clock; AMQP tables carry a Python float as a 32-bit float, which at today's
epoch is off by up to a minute, so floats are not written), re-enters the
queue after one hop, and is sent back for the rest (`remaining_wait`) without running the
handler or counting anything, until the time has come. Pure functions; clock passed in.

Clock skew between hosts: a reader whose clock runs behind the writer's sends the copy on
one more (short) hop; one whose clock runs ahead handles it early by the difference (well
under a second between NTP-synced hosts). Waits within one hop depend on no clock at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from framework.errors import MAX_RETRY_LATER
from framework.wire import names

# A not-before further ahead than this is not one the framework wrote (a forged header would
# otherwise park the message for ever): it is ignored. A day above the longest wait written,
# for clocks that disagree.
MAX_AHEAD = MAX_RETRY_LATER + 24 * 3600.0


def not_before_header(moment: float) -> int:
    """The `fw-not-before` value for `moment` (epoch seconds): epoch ms, rounded up."""
    return math.ceil(moment * 1000)


def not_before_of(headers: Mapping[str, Any], now: float) -> float | None:
    """The message's not-before (epoch seconds), or None if absent, invalid or absurd.

    An int is epoch milliseconds; a float is read as epoch seconds (a writer that sent
    seconds: coarse, after the 32-bit encoding)."""
    value = headers.get(names.NOT_BEFORE)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    moment = value / 1000 if isinstance(value, int) else float(value)
    if not math.isfinite(moment) or moment <= 0 or moment > now + MAX_AHEAD:
        return None
    return moment


def remaining_wait(headers: Mapping[str, Any], now: float) -> float:
    """Seconds until the message may be handled (0: now)."""
    moment = not_before_of(headers, now)
    return 0.0 if moment is None else max(moment - now, 0.0)


def hop_ms(wait_ms: int, max_hop_ms: int) -> tuple[int, int | None]:
    """Split a wait: this hop's delay, and the whole wait to write as `fw-not-before` when
    one hop cannot carry it (None: the hop covers it all)."""
    if wait_ms <= max_hop_ms:
        return wait_ms, None
    return max_hop_ms, wait_ms
