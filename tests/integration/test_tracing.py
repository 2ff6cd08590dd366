"""OpenTelemetry across the example services on the real broker: one order, one trace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from opentelemetry.context import Context as OtelContext
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from framework import Bus, Command, Context, Worker
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory
from schemas.orders import PlaceOrder
from services.customers.worker import CustomerWorker
from services.notifications.mailer import Mailer
from services.notifications.worker import NotificationWorker, ReceiptWorker
from services.orders.worker import OrdersSettings, OrderWorker
from services.payments.gateway import ChargeResult, Gateway, GatewayError, GatewaySettings
from services.payments.worker import PaymentWorker
from tests.integration.ops_service import Job, JobWorker
from tests.integration.vhost_admin import Permissions, VhostAdmin, url_for
from tests.otlp_collector import otlp_collector

REPO = Path(__file__).resolve().parents[2]


class FailsFirstCharge(Gateway):
    """A gateway that answers at once and fails only the first call (a transient 503)."""

    def __init__(self) -> None:
        super().__init__(GatewaySettings(latency=0.0, failure_rate=0.0, decline_rate=0.0))

    async def charge(self, order_id: str, amount_cents: int) -> ChargeResult:
        if self.calls == 0:
            self.calls += 1
            raise GatewayError("503 from the payment gateway")
        return await super().charge(order_id, amount_cents)


class WhenEnded(SpanProcessor):
    """Sets `ended` once a span named `name` has ended and `condition()` holds."""

    def __init__(self, name: str, condition: Callable[[], bool] = lambda: True) -> None:
        self.name = name
        self.condition = condition
        self.ended = asyncio.Event()

    def on_start(self, span: Span, parent_context: OtelContext | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == self.name and self.condition():
            self.ended.set()


@pytest.fixture
def vhost_url(amqp_url: str) -> Iterator[str]:
    """A vhost of this test only: the example services' fixed queue names are its own."""
    admin = VhostAdmin()
    name = f"fw-tracing-{os.urandom(4).hex()}"
    admin.add_vhost(name)
    try:
        user = urlsplit(amqp_url).username or "guest"
        admin.set_permissions(name, user, Permissions(".*", ".*", ".*"))
        yield url_for(amqp_url, name)
    finally:
        admin.delete_vhost(name)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        await worker.wait_ready()
        yield worker
    finally:
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def children(spans: list[ReadableSpan], parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    """The spans named `name` whose parent is `parent`, in the order they started."""
    found = [
        s
        for s in spans
        if s.name == name and s.parent is not None and s.parent.span_id == ids(parent)[1]
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def child(spans: list[ReadableSpan], parent: ReadableSpan, name: str) -> ReadableSpan:
    [found] = children(spans, parent, name)
    return found


@pytest.mark.timeout(60)
async def test_an_order_is_one_trace_across_three_services(
    vhost_url: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """PlaceOrder through orders, payments (a failed charge, retried) and notifications: one
    trace, each hop the child of the one before, the retry linked to the failed attempt."""
    receipt_done = WhenEnded("process notifications.receipts")
    provider.add_span_processor(receipt_done)
    mailer = Mailer()
    async with contextlib.AsyncExitStack() as stack:

        async def bus(service: str) -> Bus:
            connect = Bus.connect(vhost_url, service=service, tracer_provider=provider)
            return await stack.enter_async_context(connect)

        client, orders, payments, notifications = [
            await bus(s) for s in ("client", "orders", "payments", "notifications")
        ]
        await stack.enter_async_context(running(CustomerWorker(await bus("customers"))))
        notifier = NotificationWorker(notifications)
        replicated = WhenEnded(
            "process notifications", lambda: notifier.customers.get("c1") is not None
        )
        provider.add_span_processor(replicated)
        await stack.enter_async_context(running(notifier))
        await stack.enter_async_context(running(ReceiptWorker(notifications, mailer)))
        await stack.enter_async_context(running(PaymentWorker(payments, FailsFirstCharge())))
        settings = OrdersSettings(db=str(tmp_path / "orders.db"))
        await stack.enter_async_context(running(OrderWorker(orders, settings)))
        await asyncio.wait_for(replicated.ended.wait(), 20)  # the customers' snapshot

        await client.send(
            PlaceOrder(order_id="o1", customer_id="c1", amount_cents=1200),
            idempotency_key="order-o1",
        )
        await asyncio.wait_for(receipt_done.ended.wait(), 30)

    assert [mail.to for mail in mailer.sent] == ["customer1@example.com"]
    [send] = [s for s in exporter.get_finished_spans() if s.name == "send orders.PlaceOrder.v1"]
    trace_id = ids(send)[0]
    spans = [s for s in exporter.get_finished_spans() if ids(s)[0] == trace_id]
    assert send.parent is None and send.kind is SpanKind.PRODUCER

    order = child(spans, send, "process orders")
    assert order.kind is SpanKind.CONSUMER
    child(spans, order, "publish orders.OrderPlaced.v1")
    charge = child(spans, order, "send payments.ChargePayment.v1")

    failed, charged = children(spans, charge, "process payments")
    assert (failed.attributes or {})["fw.settlement"] == "retry"
    assert failed.status.status_code is StatusCode.ERROR
    assert (charged.attributes or {})["fw.attempt"] == 2
    assert [link.context.span_id for link in charged.links] == [ids(failed)[1]]

    paid = child(spans, charged, "publish payments.PaymentSucceeded.v1")
    notified = child(spans, paid, "process notifications")
    receipt = child(spans, notified, "send notifications.SendReceipt.v1")
    mailed = child(spans, receipt, "process notifications.receipts")
    child(spans, mailed, "publish notifications.ReceiptSent.v1")
    for process in (order, charged, notified, mailed):
        assert (process.attributes or {})["fw.settlement"] == "ack"
        assert (process.attributes or {})["messaging.message.conversation_id"] == "order-o1"


async def test_framework_run_exports_spans_where_otel_variables_say(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """`framework run` with OTEL_EXPORTER_OTLP_ENDPOINT: the delivery's process span reaches
    that collector over OTLP/HTTP, under the worker's service name."""
    worker_cls = type("Here", (JobWorker,), {"queue": queue_name})
    await bus.declare(worker_cls)
    with otlp_collector() as collector:
        env = {
            **os.environ,
            "AMQP_URL": amqp_url,
            "OPS_QUEUE": queue_name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms between batches
            "FRAMEWORK_LOG_LEVEL": "warning",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework",
            "run",
            "tests.integration.ops_service:JobWorker",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await bus.send(Job(job_id="traced"), idempotency_key="job-traced")
            name = f"process {queue_name}"
            assert await asyncio.to_thread(collector.wait_for_span, name, 20)
        finally:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
            await broker_admin.delete_worker_queues(
                queue_name, build_spec(worker_cls).policy.tiers_ms()
            )
    [resource] = {
        attribute.value.string_value
        for request in collector.requests
        for spans in request.resource_spans
        for attribute in spans.resource.attributes
        if attribute.key == "service.name"
    }
    assert resource == queue_name  # JobWorker sets no `service`: named after its queue


class Quote(Command):
    type_name = "tests.tracing.Quote"
    sku: str


async def test_a_request_span_lasts_until_the_reply(
    amqp_url: str,
    worker_factory: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    queue_name: str,
) -> None:
    """Bus.request: its send span is the parent of the worker's process span and ends only
    once the reply is back."""

    class QuoteWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Quote, ctx: Context) -> dict[str, int]:
            return {"cents": 100}

    async with Bus.connect(amqp_url, service="tests", tracer_provider=provider) as traced:
        await worker_factory(QuoteWorker, traced)
        assert await traced.request(Quote(sku="a"), timeout=10) == {"cents": 100}
    [send] = [s for s in exporter.get_finished_spans() if s.name == "send tests.tracing.Quote"]
    [process] = [s for s in exporter.get_finished_spans() if s.name == f"process {queue_name}"]
    assert process.parent is not None and process.parent.span_id == ids(send)[1]
    assert send.end_time is not None and process.end_time is not None
    assert send.end_time >= process.end_time
