"""W3C trace context: a `traceparent` per message, a child span per hop.

Without OpenTelemetry the framework computes each hop's `traceparent` itself (the functions
below). With `opentelemetry-api` installed and an SDK configured, `open_tracing` gives a bus
real spans (`framework.spans`), whose contexts the messages carry instead.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.spans import Tracing

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


def open_tracing(tracer_provider: Any = None) -> Tracing | None:
    """The OpenTelemetry spans of a bus, or None when they would record nothing:
    `opentelemetry-api` is not installed, or `tracer_provider` (None: the global one) is the
    API's default, i.e. no SDK is configured. A bus asks once, when it starts; None costs
    nothing per message (the framework's own `traceparent` per hop, as without the API)."""
    try:
        from framework.spans import Tracing, tracer_of
    except ImportError:  # the `otel` extra is not installed
        return None
    tracer = tracer_of(tracer_provider)
    return None if tracer is None else Tracing(tracer)
