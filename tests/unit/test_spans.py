"""OpenTelemetry spans on the in-memory bus: the span chain, its attributes, and the off path."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from framework import Command, Context, Event, PermanentError, Worker
from framework.ops.tracing import open_tracing, parse_traceparent
from framework.testing import MemoryBus
from framework.wire import names

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Order(Command):
    type_name = "tests.spans.Order"
    n: int


class Ordered(Event):
    type_name = "tests.spans.Ordered"
    n: int


@dataclass
class Seen:
    """What the downstream handler saw of each delivery: (traceparent, headers)."""

    deliveries: list[tuple[str | None, dict[str, object]]] = field(default_factory=list)


class OrderWorker(Worker):
    queue = "spans.orders"
    retry_base_delay = 1.0
    fail_first = False

    async def handle(self, msg: Order, ctx: Context) -> None:
        if msg.n < 0:
            raise PermanentError("negative")
        if self.fail_first and ctx.attempt == 1:
            raise ConnectionError("flaky")
        await ctx.publish(Ordered(n=msg.n))


class FlakyOrderWorker(OrderWorker):
    fail_first = True


def audit_worker(seen: Seen) -> type[Worker]:
    class AuditWorker(Worker):
        queue = "spans.audit"

        async def handle(self, msg: Ordered, ctx: Context) -> None:
            seen.deliveries.append((ctx.traceparent, dict(ctx.headers)))

    return AuditWorker


@pytest.fixture
async def traced_bus(provider: TracerProvider) -> AsyncIterator[MemoryBus]:
    async with MemoryBus(service="tests", tracer_provider=provider) as bus:
        yield bus


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = by_name(exporter, name)
    return span


def ids_of(traceparent: str | None) -> tuple[int, int]:
    """(trace id, span id) of a traceparent that must be valid."""
    parsed = parse_traceparent(traceparent)
    assert parsed is not None, traceparent
    return parsed[0], parsed[1]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    trace_id: int = span.context.trace_id
    return trace_id


async def test_send_process_publish_process_is_one_chain(
    traced_bus: MemoryBus, exporter: InMemorySpanExporter
) -> None:
    """send -> process -> publish (inside the handler) -> process: each the parent of the next."""
    seen = Seen()
    await traced_bus.start_worker(OrderWorker)
    await traced_bus.start_worker(audit_worker(seen))
    await traced_bus.send(Order(n=1), idempotency_key="order-1")
    await traced_bus.drain()
    send = only(exporter, "send tests.spans.Order")
    process = only(exporter, "process spans.orders")
    publish = only(exporter, "publish tests.spans.Ordered")
    audit = only(exporter, "process spans.audit")
    assert parent_id(send) is None
    assert parent_id(process) == span_id(send)
    assert parent_id(publish) == span_id(process)
    assert parent_id(audit) == span_id(publish)
    assert len({trace_id(s) for s in (send, process, publish, audit)}) == 1
    [(traceparent, _)] = seen.deliveries
    assert ids_of(traceparent) == (trace_id(publish), span_id(publish))


async def test_span_kinds_and_messaging_attributes(
    traced_bus: MemoryBus, exporter: InMemorySpanExporter
) -> None:
    """Producer and consumer spans carry the messaging semantic conventions' attributes."""
    await traced_bus.start_worker(OrderWorker)
    await traced_bus.send(Order(n=1), idempotency_key="order-1", correlation_id="conv-1")
    await traced_bus.drain()
    send = only(exporter, "send tests.spans.Order")
    process = only(exporter, "process spans.orders")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert dict(send.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": names.COMMANDS_EXCHANGE,
        "messaging.rabbitmq.destination.routing_key": "tests.spans.Order",
        "messaging.message.id": "order-1",
        "messaging.message.conversation_id": "conv-1",
    }
    attributes = dict(process.attributes or {})
    assert attributes == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "spans.orders",
        "messaging.message.id": "order-1",
        "messaging.message.conversation_id": "conv-1",
        "messaging.message.body.size": attributes["messaging.message.body.size"],
        "fw.message.type": "tests.spans.Order",
        "fw.attempt": 1,
        "fw.settlement": "ack",
    }
    assert process.status.status_code is StatusCode.UNSET


async def test_retried_attempt_links_to_the_failed_one(
    traced_bus: MemoryBus, exporter: InMemorySpanExporter
) -> None:
    """The retry's process span links to the failed attempt's; both are children of the send."""
    await traced_bus.start_worker(FlakyOrderWorker)
    await traced_bus.send(Order(n=2))
    await traced_bus.drain()
    send = only(exporter, "send tests.spans.Order")
    first, second = by_name(exporter, "process spans.orders")
    assert (first.attributes or {})["fw.attempt"] == 1
    assert (second.attributes or {})["fw.attempt"] == 2
    assert parent_id(first) == parent_id(second) == span_id(send)
    assert [link.context.span_id for link in second.links] == [span_id(first)]
    assert first.links == ()
    assert first.status.status_code is StatusCode.ERROR
    failed = dict(first.attributes or {})
    assert failed["fw.settlement"] == "retry"
    assert failed["fw.retry.next_attempt"] == 2
    assert isinstance(failed["fw.retry.delay_ms"], int) and failed["fw.retry.delay_ms"] > 0
    assert failed["error.type"] == "ConnectionError"
    assert (second.attributes or {})["fw.settlement"] == "ack"


async def test_dead_letter_is_recorded_with_its_reason(
    traced_bus: MemoryBus, exporter: InMemorySpanExporter
) -> None:
    """A permanent failure: settlement dead-letter, its reason, status ERROR; the DLQ copy
    names the attempt in fw-previous-attempt."""
    await traced_bus.start_worker(OrderWorker)
    await traced_bus.send(Order(n=-1))
    await traced_bus.drain()
    process = only(exporter, "process spans.orders")
    attributes = dict(process.attributes or {})
    assert attributes["fw.settlement"] == "dead-letter"
    assert attributes["fw.dead_letter.reason"] == "permanent"
    assert attributes["error.type"] == "PermanentError"
    assert process.status.status_code is StatusCode.ERROR
    [copy] = traced_bus.dead_letters("spans.orders")
    previous = parse_traceparent(str(copy.headers[names.PREVIOUS_ATTEMPT]))
    assert previous is not None and previous[:2] == (trace_id(process), span_id(process))


async def test_duplicate_is_recorded(traced_bus: MemoryBus, exporter: InMemorySpanExporter) -> None:
    """The second delivery of a key is a process span with settlement duplicate."""
    await traced_bus.start_worker(OrderWorker)
    await traced_bus.send(Order(n=3), idempotency_key="same")
    await traced_bus.send(Order(n=3), idempotency_key="same")
    await traced_bus.drain()
    settlements = [
        (s.attributes or {})["fw.settlement"] for s in by_name(exporter, "process spans.orders")
    ]
    assert settlements == ["ack", "duplicate"]


async def test_incoming_trace_context_is_the_parent_and_tracestate_travels_on(
    traced_bus: MemoryBus, exporter: InMemorySpanExporter
) -> None:
    """A send with a caller's traceparent joins that trace; its tracestate reaches the
    messages published downstream."""
    seen = Seen()
    await traced_bus.start_worker(OrderWorker)
    await traced_bus.start_worker(audit_worker(seen))
    # a message from another system: its own traceparent and tracestate headers
    await traced_bus.publish_raw(
        "tests.spans.Order",
        b'{"n": 4}',
        exchange=names.COMMANDS_EXCHANGE,
        message_id="foreign-1",
        type="tests.spans.Order",
        headers={names.TRACEPARENT: TRACEPARENT, names.TRACESTATE: "vendor=abc"},
    )
    await traced_bus.drain()
    process = only(exporter, "process spans.orders")
    assert process.parent is not None and process.parent.is_remote
    assert (trace_id(process), parent_id(process)) == ids_of(TRACEPARENT)
    [(_, headers)] = seen.deliveries
    assert headers[names.TRACESTATE] == "vendor=abc"


async def test_no_tracer_provider_means_no_spans_and_the_old_traceparents(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Without a provider given or set globally, nothing is recorded and each hop's
    traceparent is a child computed by the framework, as before."""
    seen = Seen()
    async with MemoryBus(service="tests") as bus:
        assert bus.tracing is None
        await bus.start_worker(OrderWorker)
        await bus.start_worker(audit_worker(seen))
        await bus.send(Order(n=5), traceparent=TRACEPARENT)
        await bus.drain()
    assert exporter.get_finished_spans() == ()
    [(traceparent, headers)] = seen.deliveries
    ours = parse_traceparent(TRACEPARENT)
    theirs = parse_traceparent(traceparent)
    assert ours is not None and theirs is not None
    assert theirs[0] == ours[0] and theirs[1] != ours[1]
    assert names.PREVIOUS_ATTEMPT not in headers


def test_the_api_default_provider_is_off() -> None:
    """The API's no-op provider (no SDK) and the unset global one give no tracing."""
    assert open_tracing(NoOpTracerProvider()) is None
    assert open_tracing() is None


def test_a_disabled_sdk_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: the SDK's provider hands out no-op tracers, so no tracing."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert open_tracing(TracerProvider()) is None


async def test_without_the_api_installed_the_bus_works_untraced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `opentelemetry` not importable the bus starts untraced and messages flow."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "framework.ops.spans", raising=False)
    seen = Seen()
    async with MemoryBus(service="tests", tracer_provider=TracerProvider()) as bus:
        assert bus.tracing is None
        await bus.start_worker(OrderWorker)
        await bus.start_worker(audit_worker(seen))
        await bus.send(Order(n=6))
        await bus.drain()
    assert len(seen.deliveries) == 1


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (TRACEPARENT, (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1)),
        ("00-" + "0" * 32 + "-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_parse_traceparent(value: str | None, parsed: tuple[int, int, int] | None) -> None:
    """Valid traceparents give their ids and flags; all-zero ids and junk give None."""
    assert parse_traceparent(value) == parsed
