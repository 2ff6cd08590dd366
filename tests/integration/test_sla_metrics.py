"""Time in queue and SLA breaches on a real broker, read from a running worker's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from framework import Bus, Command, Context, Settings, Worker
from framework.ops.observability import serve_worker_probes
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names
from framework.wire.envelope import encode_body

Scrape = Callable[[], Awaitable[str]]


class Order(Command):
    type_name = "tests.sla.Order"
    slow: bool = False


def order_worker(queue_name: str) -> type[Worker]:
    """A worker whose handler runs past its 0.3 s timeout for slow orders (no retries)."""

    class Orders(Worker):
        queue = queue_name
        timeout = 0.3
        max_attempts = 1

        async def handle(self, msg: Order, ctx: Context) -> None:
            if msg.slow:
                await asyncio.sleep(30)

    return Orders


@contextlib.asynccontextmanager
async def scraped(worker: Worker) -> AsyncIterator[Scrape]:
    """The worker's /metrics, served as `framework run` serves it."""
    async with serve_worker_probes(worker, 0, host="127.0.0.1") as server:

        async def scrape() -> str:
            url = f"http://127.0.0.1:{server.port}/metrics"

            def fetch() -> str:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return str(response.read().decode())

            return await asyncio.to_thread(fetch)

        yield scrape


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels}` in a Prometheus text exposition (None: not there)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def publish_stamped(
    broker_admin: BrokerAdmin, queue: str, stamp: datetime, **headers: object
) -> None:
    """Publish an order straight to `queue` with the AMQP timestamp `stamp`."""
    await broker_admin.publish_raw(
        queue,
        encode_body(Order()),
        type=Order.type_name,
        content_type=names.CONTENT_TYPE,
        timestamp=stamp,
        headers=dict(headers),
    )


async def test_a_delayed_message_shows_its_wait(
    worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A message published 42 s before the worker took it is timed at 42 s (plus up to a
    second: the timestamp is in whole seconds, plus its delivery) in
    framework_time_in_queue_seconds."""
    worker = await worker_factory(order_worker(queue_name))
    q = {"queue": queue_name}
    async with scraped(worker) as scrape:
        await publish_stamped(
            broker_admin, queue_name, datetime.fromtimestamp(time.time() - 42, UTC)
        )
        await eventually(lambda: worker.stats.handled == 1, timeout=10)
        text = await scrape()
    assert value(text, "framework_time_in_queue_seconds_count", **q) == 1
    assert 42 <= (value(text, "framework_time_in_queue_seconds_sum", **q) or 0) < 50
    assert value(text, "framework_time_in_queue_seconds_bucket", le="30.0", **q) == 0
    assert value(text, "framework_time_in_queue_seconds_bucket", le="60.0", **q) == 1


@pytest.fixture
async def tolerant_bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A Bus whose workers tolerate 5 s of clock skew."""
    settings = Settings(clock_skew_tolerance=5.0)
    async with Bus.connect(amqp_url, settings=settings, service="tests") as bus:
        yield bus


async def test_a_timestamp_ahead_within_the_skew_tolerance_reads_zero(
    tolerant_bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A sender clock 3 s ahead, inside a 5 s tolerance, yields a wait of exactly 0, never a
    negative one, and is not counted as skewed."""
    worker = await worker_factory(order_worker(queue_name), tolerant_bus)
    q = {"queue": queue_name}
    async with scraped(worker) as scrape:
        ahead = datetime.fromtimestamp(time.time() + 3, UTC)
        await publish_stamped(broker_admin, queue_name, ahead)
        await eventually(lambda: worker.stats.handled == 1, timeout=10)
        text = await scrape()
    assert value(text, "framework_time_in_queue_seconds_count", **q) == 1
    assert value(text, "framework_time_in_queue_seconds_sum", **q) == 0
    assert value(text, "framework_time_in_queue_skewed_total", **q) == 0


async def test_a_timestamp_far_ahead_is_counted_not_timed(
    worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A timestamp ten minutes ahead of the worker's clock is not trusted: the message is
    handled and counted in framework_time_in_queue_skewed_total, not timed."""
    worker = await worker_factory(order_worker(queue_name))
    q = {"queue": queue_name}
    async with scraped(worker) as scrape:
        ahead = datetime.fromtimestamp(time.time() + 600, UTC)
        await publish_stamped(broker_admin, queue_name, ahead)
        await eventually(lambda: worker.stats.handled == 1, timeout=10)
        text = await scrape()
    assert value(text, "framework_time_in_queue_skewed_total", **q) == 1
    assert value(text, "framework_time_in_queue_seconds_count", **q) == 0


async def test_an_expired_deadline_is_a_deadline_breach(
    worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A message whose deadline passed a minute ago is dead-lettered as expired and counted
    as a deadline breach (and not as a timeout)."""
    worker = await worker_factory(order_worker(queue_name))
    q = {"queue": queue_name}
    async with scraped(worker) as scrape:
        assert value(await scrape(), "framework_sla_breaches_total", kind="deadline", **q) == 0
        deadline_ms = int(time.time() * 1000) - 60_000
        now = datetime.now(UTC)
        await publish_stamped(broker_admin, queue_name, now, **{names.DEADLINE: deadline_ms})
        await eventually(lambda: worker.stats.expired == 1, timeout=10)
        text = await scrape()
    assert value(text, "framework_sla_breaches_total", kind="deadline", **q) == 1
    assert value(text, "framework_sla_breaches_total", kind="timeout", **q) == 0
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 1


async def test_a_handler_timeout_is_a_timeout_breach(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A handler that runs past the worker's timeout is counted as a timeout breach (and
    not as a deadline breach)."""
    worker = await worker_factory(order_worker(queue_name))
    q = {"queue": queue_name}
    async with scraped(worker) as scrape:
        assert value(await scrape(), "framework_sla_breaches_total", kind="timeout", **q) == 0
        await bus.send(Order(slow=True))
        await eventually(lambda: worker.stats.dead_lettered == 1, timeout=10)
        text = await scrape()
    assert value(text, "framework_sla_breaches_total", kind="timeout", **q) == 1
    assert value(text, "framework_sla_breaches_total", kind="deadline", **q) == 0
    assert worker.stats.timeouts == 1
