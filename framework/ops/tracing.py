"""Whether a bus records OpenTelemetry spans, and the W3C `traceparent` functions.

With `opentelemetry-api` installed and an SDK configured, `open_tracing` gives a bus real
spans (`framework.ops.spans`), whose contexts the messages carry; without, the framework computes
each hop's `traceparent` itself (`framework.ops.traceparent`, re-exported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.ops.traceparent import child_traceparent, new_traceparent, parse_traceparent

if TYPE_CHECKING:
    from framework.ops.spans import Tracing


def open_tracing(tracer_provider: Any = None) -> Tracing | None:
    """The OpenTelemetry spans of a bus, or None when they would record nothing:
    `opentelemetry-api` is not installed, or `tracer_provider` (None: the global one) is the
    API's default, i.e. no SDK is configured. A bus asks once, when it starts; None costs
    nothing per message (the framework's own `traceparent` per hop, as without the API)."""
    try:
        from framework.ops.spans import Tracing, tracer_of
    except ImportError:  # the `otel` extra is not installed
        return None
    tracer = tracer_of(tracer_provider)
    return None if tracer is None else Tracing(tracer)


__all__ = ["child_traceparent", "new_traceparent", "open_tracing", "parse_traceparent"]
