"""W3C trace context (pure): the `traceparent` each message carries, a child per hop.

Without OpenTelemetry the framework computes each hop's `traceparent` with these functions;
with it, the spans' contexts (`framework.ops.spans`) fill the same header.
"""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    """Start a new trace."""
    ids = secrets.token_hex(24)  # one read of the OS's randomness for both ids
    return f"00-{ids[:32]}-{ids[32:]}-01"


def child_traceparent(parent: str | None) -> str:
    """Continue `parent`'s trace with a new span, or start a trace if it is absent or invalid."""
    match = _TRACEPARENT.match(parent or "")
    if match is None:
        return new_traceparent()
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a valid `traceparent`, else None (all-zero ids are
    invalid)."""
    match = _TRACEPARENT.match(value or "")
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(match.group(3), 16)
