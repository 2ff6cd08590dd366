"""Metrics follow the applied settlements, through WorkerStats, on a registry of their own."""

from __future__ import annotations

import pytest

from framework import CircuitBreaker, Command, Context, RateLimit, RateLimited, Worker
from framework.consume.decisions import Ack, DeadLetter, Reason, Retry
from framework.ops.metrics import Metrics
from framework.ops.queue_stats import QueueSample, group
from framework.ops.stats import WorkerStats
from framework.resilience.breaker import BreakerState
from framework.testing import MemoryBus


class Job(Command):
    type_name = "tests.metrics.Job"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_settlements_recorded_by_stats_reach_the_counters(metrics: Metrics) -> None:
    """WorkerStats.record feeds its observers with the same settlement it counts."""
    stats = WorkerStats()
    stats.observers.append(metrics.observer("q"))
    stats.record(Ack(), 0.02)
    stats.record(Ack(), 0.03)
    stats.record(Ack(duplicate=True), 0.001)
    stats.record(Retry(delay_ms=1000, tier_ms=1000, next_attempt=2, error="x"), 0.5)
    stats.record(DeadLetter(Reason.EXPIRED, "late", 1), 0.0)
    stats.record(DeadLetter(Reason.PERMANENT, "no", 1), 0.1)
    assert stats.handled == 2 and "observers" not in stats.as_dict()
    assert value(metrics, "framework_messages_handled_total", queue="q") == 2
    assert value(metrics, "framework_messages_duplicate_total", queue="q") == 1
    assert value(metrics, "framework_messages_retried_total", queue="q") == 1
    assert value(metrics, "framework_messages_expired_total", queue="q") == 1
    assert (
        value(metrics, "framework_messages_dead_lettered_total", queue="q", reason="permanent") == 1
    )
    assert value(metrics, "framework_messages_failed_total", queue="q", reason="transient") == 1
    assert value(metrics, "framework_messages_failed_total", queue="q", reason="expired") == 1


def test_refused_replies_are_counted(metrics: Metrics) -> None:
    """A reply refused for a forged reply_to shows in stats and in its counter."""
    stats = WorkerStats()
    counter = metrics.replies_refused.labels("q")
    stats.refusal_observers.append(lambda: counter.inc())
    stats.reply_refused()
    assert stats.as_dict()["replies_refused"] == 1
    assert value(metrics, "framework_replies_refused_total", queue="q") == 1


def test_latency_only_where_the_handler_ran(metrics: Metrics) -> None:
    """Duplicates, invalid and expired messages are not timed."""
    metrics.record("q", Ack(), 0.2)
    metrics.record("q", Ack(duplicate=True), 9.0)
    metrics.record("q", DeadLetter(Reason.INVALID, "bad", 1), 9.0)
    metrics.record("q", DeadLetter(Reason.EXHAUSTED, "boom", 5), 0.4)
    assert value(metrics, "framework_handler_duration_seconds_count", queue="q") == 2
    assert value(metrics, "framework_handler_duration_seconds_sum", queue="q") == (
        pytest.approx(0.6)
    )


def test_queue_depth_gauges(metrics: Metrics) -> None:
    """Depth gauges come from the same QueueStats as `framework queues`."""
    (row,) = group(
        [
            QueueSample("q", ready=7, unacked=1, consumers=1, publish_rate=1.0, deliver_rate=2.0),
            QueueSample("q.dlq", ready=2),
        ],
        ["q"],
        "management",
    )
    metrics.set_queue_stats(row)
    assert value(metrics, "framework_queue_ready_messages", queue="q") == 7
    assert value(metrics, "framework_queue_unacked_messages", queue="q") == 1
    assert value(metrics, "framework_queue_dlq_messages", queue="q") == 2
    assert value(metrics, "framework_queue_suggested_replicas", queue="q") == 1  # (1+7/60)/2


def test_breaker_state_is_reported_through_one_function(metrics: Metrics) -> None:
    """The gauge takes the breaker's own state: 0 closed, 1 half-open, 2 open."""
    metrics.set_breaker_state("q", "payments", BreakerState.OPEN)
    assert value(metrics, "framework_breaker_state", queue="q", breaker="payments") == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_watched_worker_breaker_transitions_reach_the_gauge(
    metrics: Metrics, test_bus: MemoryBus
) -> None:
    """A watched worker's breaker sets `framework_breaker_state` on every transition:
    closed, open after the failures, half-open once its reset timeout passed (read at
    scrape time), closed again after a successful probe."""
    clock = FakeClock()
    gateway = CircuitBreaker("gateway", failure_threshold=2, reset_timeout=10.0, clock=clock)

    class Guarded(Worker):
        queue = "metrics.guarded"
        breakers = (gateway,)

        async def handle(self, msg: Job, ctx: Context) -> None:
            return None

    worker = Guarded(test_bus)
    metrics.watch(worker)

    def gauge() -> float | None:
        return value(metrics, "framework_breaker_state", queue="metrics.guarded", breaker="gateway")

    assert gauge() == 0
    for _ in range(2):
        with pytest.raises(RuntimeError):
            async with gateway:
                raise RuntimeError("gateway down")
    assert gauge() == 2
    clock.now = 11.0
    metrics.refresh_breakers(worker)
    assert gauge() == 1
    async with gateway:
        pass
    assert gauge() == 0


def test_registries_are_independent() -> None:
    """Two Metrics never share (or collide on) a registry."""
    a, b = Metrics(), Metrics()
    a.record("q", Ack(), 0.1)
    assert value(b, "framework_messages_handled_total", queue="q") is None
    assert b"framework_messages_handled_total" in a.render()


class Tick(Command):
    type_name = "tests.metrics.Tick"


class Watched(Worker):
    queue = "watched"

    async def handle(self, msg: Tick, ctx: Context) -> None:
        return None


async def test_loop_lag_and_store_health_reach_the_metrics(metrics: Metrics) -> None:
    """A watched worker's loop lag, stalls, store failures, fenced completions and store
    health are exported (counters catch up at each render)."""
    async with MemoryBus() as bus:
        worker = Watched(bus)
        metrics.watch(worker)
        worker.loop_lag.observe(0.01)
        worker.loop_lag.observe(2.0)
        worker.store_health.failed()
        worker.store_health.failed()
        worker.store_health.fenced += 1
        metrics.render()
        q = {"queue": "watched"}
        assert value(metrics, "framework_event_loop_lag_seconds_count", **q) == 2
        assert value(metrics, "framework_event_loop_stalls_total", **q) == 1
        assert value(metrics, "framework_idempotency_store_failures_total", **q) == 2
        assert value(metrics, "framework_idempotency_fenced_total", **q) == 1
        assert value(metrics, "framework_idempotency_store_healthy", **q) == 0
        worker.store_health.succeeded()
        metrics.render()
        assert value(metrics, "framework_idempotency_store_healthy", **q) == 1
        assert value(metrics, "framework_idempotency_store_failures_total", **q) == 2


def test_retry_laters_and_waiting_hops_are_not_counted_as_failures(metrics: Metrics) -> None:
    """A RetryLater is a retry (and a retry-later), not a failure; a hop counts nothing."""
    stats = WorkerStats()
    stats.observers.append(metrics.observer("q"))
    stats.record(Retry(1000, 1000, 1, "RetryLater: x", retry_later=1), 0.1)
    stats.record(Retry(1000, 1000, 1, "waiting", waiting=True), 0.0)
    assert (stats.retried, stats.retry_laters) == (1, 1)
    assert value(metrics, "framework_messages_retried_total", queue="q") == 1
    assert value(metrics, "framework_messages_retry_later_total", queue="q") == 1
    assert value(metrics, "framework_messages_failed_total", queue="q", reason="transient") is None


async def test_a_watched_workers_rate_limits_reach_the_metrics(
    metrics: Metrics, test_bus: MemoryBus
) -> None:
    """Calls by outcome follow the limit's stats at each scrape; a local limit reads shared 0."""
    clock = FakeClock()
    limit = RateLimit("api", per_second=1, max_wait=0.0, clock=clock)

    class Limited(Worker):
        queue = "metrics.limited"
        rate_limits = (limit,)

        async def handle(self, msg: Job, ctx: Context) -> None:
            return None

    metrics.watch(Limited(test_bus))
    await limit.acquire()
    with pytest.raises(RateLimited):
        await limit.acquire()
    metrics.render()

    def calls(outcome: str) -> float | None:
        labels = {"queue": "metrics.limited", "limit": "api", "outcome": outcome}
        return value(metrics, "framework_rate_limit_calls_total", **labels)

    assert (calls("immediate"), calls("waited"), calls("refused")) == (1, 0, 1)
    labels = {"queue": "metrics.limited", "limit": "api"}
    assert value(metrics, "framework_rate_limit_shared", **labels) == 0
    assert value(metrics, "framework_rate_limit_redis_failures_total", **labels) == 0
