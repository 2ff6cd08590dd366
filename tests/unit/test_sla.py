"""Time in queue and SLA breaches: pure arithmetic with the clock passed in, and the worker's
stats feeding them to the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from framework import Command, Context, Worker
from framework.consume.decisions import Ack, DeadLetter, Failed, Reason, Retry
from framework.consume.handling import HandlingPolicy, process
from framework.idempotency import MemoryStore
from framework.ops.metrics import Metrics
from framework.ops.sla import Breach, breach_of, published_at, time_in_queue
from framework.ops.stats import WorkerStats
from framework.testing import MemoryBus
from framework.wire import names
from framework.wire.envelope import Envelope, encode_body

PUBLISHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Ping(Command):
    type_name = "tests.sla.Ping"


def envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": "k",
        "type": Ping.type_name,
        "body": encode_body(Ping()),
        "correlation_id": "c",
        "timestamp": PUBLISHED,
        **changes,
    }
    return Envelope(**fields)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# ---- time in queue ----------------------------------------------------------------------


def test_wait_is_now_minus_publish() -> None:
    """A message published 12.5 s ago waited 12.5 s."""
    assert time_in_queue(1000.0, 1012.5, tolerance=1.0) == 12.5


def test_publish_ahead_within_the_tolerance_reads_zero() -> None:
    """A sender clock ahead by up to the tolerance is skew: the wait is 0, never negative."""
    assert time_in_queue(1000.8, 1000.0, tolerance=1.0) == 0.0
    assert time_in_queue(1001.0, 1000.0, tolerance=1.0) == 0.0


def test_publish_ahead_beyond_the_tolerance_is_not_measured() -> None:
    """A timestamp further ahead than the tolerance cannot be trusted: no wait at all."""
    assert time_in_queue(1001.5, 1000.0, tolerance=1.0) is None
    assert time_in_queue(1000.001, 1000.0, tolerance=0.0) is None


def test_first_delivery_is_measured_from_its_timestamp() -> None:
    """A first delivery's publish time is its AMQP timestamp, in epoch seconds."""
    assert published_at(envelope()) == PUBLISHED.timestamp()


def test_retried_deferred_and_unstamped_copies_are_not_measured() -> None:
    """Retried and deferred copies keep the original timestamp (their wait is the backoff);
    a message without a timestamp has nothing to measure from."""
    assert published_at(envelope(attempt=2)) is None
    assert published_at(envelope(headers={names.DEFERRALS: 1})) is None
    assert published_at(envelope(timestamp=None)) is None


# ---- breaches ---------------------------------------------------------------------------


def test_an_expired_dead_letter_is_a_deadline_breach() -> None:
    """Dead-lettered as expired: the deadline was missed; other dead letters are not."""
    assert breach_of(DeadLetter(Reason.EXPIRED, "late", 1), False) is Breach.DEADLINE
    assert breach_of(DeadLetter(Reason.PERMANENT, "no", 1), False) is None
    assert breach_of(Ack(), False) is None


def test_a_timed_out_handler_is_a_timeout_breach_whatever_its_settlement() -> None:
    """A handler timeout counts whether the delivery is retried or dead-lettered."""
    retry = Retry(delay_ms=1000, tier_ms=1000, next_attempt=2, error="HandlerTimeout")
    assert breach_of(retry, True) is Breach.TIMEOUT
    assert breach_of(DeadLetter(Reason.EXHAUSTED, "HandlerTimeout", 5), True) is Breach.TIMEOUT


async def test_processing_marks_only_a_timeout_as_timed_out() -> None:
    """The outcome of a handler past its timeout says so; a handler that raised does not."""
    policy = HandlingPolicy(
        queue="q", message_types={Ping.type_name: Ping}, timeout=0.2, lease=5, retention=60
    )

    async def slow(msg: Any, ctx: Context) -> None:
        await asyncio.sleep(5)

    async def boom(msg: Any, ctx: Context) -> None:
        raise RuntimeError("boom")

    def no_context(env: Envelope) -> Context:
        return None  # type: ignore[return-value]

    timed_out = await process(envelope(), policy, MemoryStore(), slow, no_context)
    failed = await process(envelope(message_id="k2"), policy, MemoryStore(), boom, no_context)
    assert isinstance(timed_out, Failed) and timed_out.timed_out
    assert isinstance(failed, Failed) and not failed.timed_out


# ---- stats to metrics -------------------------------------------------------------------


class Watched(Worker):
    queue = "sla.watched"

    async def handle(self, msg: Ping, ctx: Context) -> None:
        return None


@pytest.fixture
async def watched() -> AsyncIterator[tuple[WorkerStats, Metrics]]:
    async with MemoryBus() as bus:
        worker = Watched(bus)
        metrics = Metrics()
        metrics.watch(worker)
        yield worker.stats, metrics


async def test_sla_series_exist_at_zero_once_watched(watched: tuple[WorkerStats, Metrics]) -> None:
    """Both breach kinds, the skew counter and the wait histogram are exported from the
    start, so a dashboard shows 0 rather than no data."""
    _, metrics = watched
    q = {"queue": "sla.watched"}
    for kind in ("deadline", "timeout"):
        assert value(metrics, "framework_sla_breaches_total", kind=kind, **q) == 0
    assert value(metrics, "framework_time_in_queue_skewed_total", **q) == 0
    assert value(metrics, "framework_time_in_queue_seconds_count", **q) == 0


async def test_waits_and_breaches_reach_the_metrics(watched: tuple[WorkerStats, Metrics]) -> None:
    """Waits are observed, untrusted timestamps counted, and each settlement's breach
    counted by kind."""
    stats, metrics = watched
    stats.waited(3.0)
    stats.waited(0.0)
    stats.waited(None)
    stats.record(DeadLetter(Reason.EXPIRED, "late", 1), 0.0)
    stats.record(Retry(delay_ms=1, tier_ms=1, next_attempt=2, error="t"), 1.0, timed_out=True)
    stats.record(Ack(), 0.1)
    q = {"queue": "sla.watched"}
    assert value(metrics, "framework_time_in_queue_seconds_count", **q) == 2
    assert value(metrics, "framework_time_in_queue_seconds_sum", **q) == 3.0
    assert value(metrics, "framework_time_in_queue_seconds_bucket", le="0.5", **q) == 1
    assert value(metrics, "framework_time_in_queue_skewed_total", **q) == 1
    assert value(metrics, "framework_sla_breaches_total", kind="deadline", **q) == 1
    assert value(metrics, "framework_sla_breaches_total", kind="timeout", **q) == 1
    assert (stats.expired, stats.timeouts, stats.skewed_timestamps) == (1, 1, 1)
