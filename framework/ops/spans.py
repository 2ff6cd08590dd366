"""OpenTelemetry spans of messages, after the semantic conventions for messaging.

A `send`/`publish` span (kind PRODUCER) around each confirmed send or publish; a `process`
span (kind CONSUMER) per delivery, child of the sender's context (`traceparent` and
`tracestate` headers), with the handler inside it and the settlement recorded on it; the
retry or dead-letter copy carries the process span's context in `fw-previous-attempt`, so
the next attempt links to it.

Imports `opentelemetry` at the top: only `framework.ops.tracing.open_tracing` imports this
module, once per bus, and only when a tracer provider with an SDK behind it is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from framework.consume.decisions import Ack, DeadLetter, Retry, Settlement
from framework.messages import Message, is_command
from framework.ops.traceparent import parse_traceparent
from framework.wire import names
from framework.wire.envelope import Envelope
from framework.wire.header_values import header_text

TRACER_NAME = "framework"
SYSTEM = "rabbitmq"


def tracer_of(provider: Any) -> trace.Tracer | None:
    """The framework's tracer from `provider` (None: the global one), or None when it would
    record nothing: the API's default (proxy or no-op) provider, i.e. no SDK configured."""
    chosen = trace.get_tracer_provider() if provider is None else provider
    tracer = chosen.get_tracer(TRACER_NAME)
    if isinstance(tracer, trace.NoOpTracer | trace.ProxyTracer):
        return None
    return tracer


class Tracing:
    """The spans of one bus (from `framework.ops.tracing.open_tracing`)."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextmanager
    def producing(
        self, message: Message, key: str, correlation_id: str | None, traceparent: str | None
    ) -> Iterator[OutgoingTrace]:
        """The span of sending a command or publishing an event, child of `traceparent` if
        it is valid, else of the current context; the message carries the span's context
        (`OutgoingTrace.headers`). An exception leaving the block is recorded on the span
        (status ERROR)."""
        command = is_command(type(message))
        operation, routing_key = "send" if command else "publish", message.type_name
        current = trace.get_current_span().get_span_context()
        # the current span itself (a handler's ctx.publish): keep its context, tracestate too
        parent = (
            None if traceparent == _format_if_valid(current) else _parent_context(traceparent, None)
        )
        span = self._tracer.start_span(
            f"{operation} {routing_key}",
            parent,
            SpanKind.PRODUCER,
            {
                "messaging.system": SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": operation,
                "messaging.destination.name": (
                    names.COMMANDS_EXCHANGE if command else names.EVENTS_EXCHANGE
                ),
                "messaging.rabbitmq.destination.routing_key": routing_key,
                "messaging.message.id": key,
                "messaging.message.conversation_id": correlation_id or key,
            },
        )
        with trace.use_span(span, end_on_exit=True):
            yield OutgoingTrace(span.get_span_context())

    def current_traceparent(self) -> str | None:
        """The `traceparent` of the current span (a delivery's `process` span in its
        handler), or None if there is none."""
        return _format_if_valid(trace.get_current_span().get_span_context())

    def delivery(self, envelope: Envelope, queue: str) -> DeliverySpan:
        """Start the `process` span of one delivery and make it current (end it with
        `DeliverySpan.end`, in the same task)."""
        headers = envelope.headers
        parent = _parent_context(envelope.traceparent, headers.get(names.TRACESTATE))
        previous = _span_context(headers.get(names.PREVIOUS_ATTEMPT), None)
        span = self._tracer.start_span(
            f"process {queue}",
            otel_context.Context() if parent is None else parent,  # none: a new trace
            SpanKind.CONSUMER,
            {
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": envelope.message_id,
                "messaging.message.conversation_id": envelope.correlation_id,
                "messaging.message.body.size": len(envelope.body),
                "fw.message.type": envelope.type,
                "fw.attempt": envelope.attempt,
            },
            links=None if previous is None else [Link(previous, {"fw.link": "previous attempt"})],
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return DeliverySpan(span, token)


class OutgoingTrace:
    """The trace headers of a message being sent: its producer span's context."""

    __slots__ = ("headers",)

    def __init__(self, context: SpanContext) -> None:
        #: (traceparent, tracestate or None)
        self.headers = (format_traceparent(context), context.trace_state.to_header() or None)


class DeliverySpan:
    """The `process` span of one delivery, current until `end`."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self._span = span
        self._token = token

    @property
    def traceparent(self) -> str:
        """This span's context as a `traceparent`: messages the handler publishes continue it."""
        return format_traceparent(self._span.get_span_context())

    def settled(self, settlement: Settlement, envelope: Envelope) -> Envelope:
        """Record the settlement on the span; returns the envelope its retry or dead-letter
        copy is made from: with this span's context in `fw-previous-attempt`."""
        span = self._span
        match settlement:
            case Ack(duplicate=duplicate):
                span.set_attribute("fw.settlement", "duplicate" if duplicate else "ack")
                return envelope
            case Retry():
                span.set_attributes(
                    {
                        "fw.settlement": "retry",
                        "fw.retry.delay_ms": settlement.delay_ms,
                        "fw.retry.next_attempt": settlement.next_attempt,
                        "fw.retry.deferred": settlement.deferrals is not None,
                        "error.type": _error_type(settlement.error),
                    }
                )
            case DeadLetter():
                span.set_attributes(
                    {
                        "fw.settlement": "dead-letter",
                        "fw.dead_letter.reason": settlement.reason.value,
                        "error.type": _error_type(settlement.error),
                    }
                )
        span.set_status(Status(StatusCode.ERROR, settlement.error))
        headers = {**envelope.headers, names.PREVIOUS_ATTEMPT: self.traceparent}
        return replace(envelope, headers=headers)

    def end(self) -> None:
        """Leave the span's context and end it."""
        otel_context.detach(self._token)  # type: ignore[arg-type]  # attach's own token
        self._span.end()


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _format_if_valid(context: SpanContext) -> str | None:
    return format_traceparent(context) if context.is_valid else None


def _span_context(traceparent: object, tracestate: object) -> SpanContext | None:
    """The remote span context a `traceparent` (and `tracestate`) header names, or None."""
    parsed = parse_traceparent(header_text(traceparent))
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    text = header_text(tracestate)
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([text]) if text else None,
    )


def _parent_context(traceparent: object, tracestate: object) -> otel_context.Context | None:
    """A context whose current span is the remote parent, or None (no valid `traceparent`)."""
    remote = _span_context(traceparent, tracestate)
    return None if remote is None else trace.set_span_in_context(NonRecordingSpan(remote))


def _error_type(error: str) -> str:
    """The exception type an outcome's error text starts with (`Type: text`), else `_OTHER`
    (the semantic conventions' value for an unknown error type)."""
    head, sep, _ = error.partition(":")
    return head if sep and head.isidentifier() else "_OTHER"
