"""Prometheus metrics: what workers did (from their settlements), queue depths, breakers.

Every `Metrics` has a registry of its own (no process-global registry), so tests and
several workers in one process never collide. Workers feed it through `WorkerStats`, the
one place settlements are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from framework.consume.decisions import Ack, DeadLetter, Reason, Retry, Settlement
from framework.ops.sla import Breach
from framework.ops.stats import SettlementObserver, WorkerStats
from framework.resilience.breaker import BreakerState, CircuitBreaker
from framework.resilience.rate_limit import RateLimit

if TYPE_CHECKING:
    from framework.ops.queue_stats import QueueStats
    from framework.worker import Worker

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# time in queue: publish times are whole seconds (framework.ops.sla), so nothing finer than 0.5 s
WAIT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# dead-letter reasons where the handler did not run (nothing to time)
_UNTIMED = frozenset({Reason.INVALID, Reason.EXPIRED, Reason.DELIVERY_LIMIT})


#: the value of `framework_breaker_state` for each breaker state
BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Metrics:
    """The framework's metric families on one registry; `render()` is the /metrics body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._before_render: list[Callable[[], None]] = []
        r = self.registry
        self.handled = Counter(
            "framework_messages_handled", "Deliveries handled successfully.", ["queue"], registry=r
        )
        self.failed = Counter(
            "framework_messages_failed",
            "Deliveries that did not succeed (reason: transient, or the DLQ reason).",
            ["queue", "reason"],
            registry=r,
        )
        self.retried = Counter(
            "framework_messages_retried",
            "Deliveries moved to a retry delay queue.",
            ["queue"],
            registry=r,
        )
        self.retry_laters = Counter(
            "framework_messages_retry_later",
            "Deliveries whose handler raised RetryLater (also counted in retried; no "
            "attempt burned).",
            ["queue"],
            registry=r,
        )
        self.rate_limit_calls = Counter(
            "framework_rate_limit_calls",
            "Calls through a RateLimit: outcome=immediate, waited (for its turn, within "
            "max_wait) or refused (RateLimited: the message is retried later).",
            ["queue", "limit", "outcome"],
            registry=r,
        )
        self.rate_limit_redis_failures = Counter(
            "framework_rate_limit_redis_failures",
            "Calls of a shared RateLimit that Redis did not answer (its redis_down fallback "
            "decided).",
            ["queue", "limit"],
            registry=r,
        )
        self.rate_limit_shared = Gauge(
            "framework_rate_limit_shared",
            "1 while a RateLimit's last decision came from Redis (shared), else 0.",
            ["queue", "limit"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "framework_messages_dead_lettered",
            "Deliveries moved to the dead-letter queue.",
            ["queue", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "framework_messages_duplicate",
            "Deliveries skipped because their key was already handled.",
            ["queue"],
            registry=r,
        )
        self.expired = Counter(
            "framework_messages_expired",
            "Deliveries dead-lettered because their deadline passed.",
            ["queue"],
            registry=r,
        )
        self.latency = Histogram(
            "framework_handler_duration_seconds",
            "Time from delivery to outcome for deliveries whose handler ran.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_in_queue = Histogram(
            "framework_time_in_queue_seconds",
            "Time from a message's publish (its AMQP timestamp: whole seconds) to the start "
            "of its handling; first deliveries only. Clock skew within the tolerance reads 0.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.skewed_timestamps = Counter(
            "framework_time_in_queue_skewed",
            "First deliveries not timed: their timestamp was ahead of the worker's clock by "
            "more than the clock skew tolerance.",
            ["queue"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "framework_sla_breaches",
            "SLA breaches: kind=deadline (dead-lettered, its deadline passed), kind=timeout "
            "(its handler ran past the worker's timeout).",
            ["queue", "kind"],
            registry=r,
        )
        self.in_flight = Gauge(
            "framework_messages_in_flight",
            "Deliveries being processed right now.",
            ["queue"],
            registry=r,
        )
        self.ready = Gauge(
            "framework_queue_ready_messages",
            "Messages waiting in the queue.",
            ["queue"],
            registry=r,
        )
        self.unacked = Gauge(
            "framework_queue_unacked_messages",
            "Messages delivered but not yet acked.",
            ["queue"],
            registry=r,
        )
        self.retry_depth = Gauge(
            "framework_queue_retry_messages",
            "Messages waiting in the queue's retry delay queues.",
            ["queue"],
            registry=r,
        )
        self.dlq_depth = Gauge(
            "framework_queue_dlq_messages",
            "Messages in the queue's dead-letter queue.",
            ["queue"],
            registry=r,
        )
        self.replicas = Gauge(
            "framework_queue_suggested_replicas",
            "Replicas that would drain the backlog within the target time.",
            ["queue"],
            registry=r,
        )
        self.replies_refused = Counter(
            "framework_replies_refused",
            "Replies not sent: the request's reply_to was not a direct reply-to name.",
            ["queue"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "framework_outbox_backlog",
            "Outbox rows committed and not yet published (as last counted by the worker's relay).",
            ["queue"],
            registry=r,
        )
        self.outbox_latency = Histogram(
            "framework_outbox_publish_latency_seconds",
            "Time from an outbox row's commit to its confirmed publish.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "framework_event_loop_lag_seconds",
            "How late the worker's event loop woke a sleeping task.",
            ["queue"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.loop_stalls = Counter(
            "framework_event_loop_stalls",
            "Event loop lags at or above the stall threshold (1 s).",
            ["queue"],
            registry=r,
        )
        self.store_failures = Counter(
            "framework_idempotency_store_failures",
            "Idempotency store calls that failed or timed out.",
            ["queue"],
            registry=r,
        )
        self.fenced = Counter(
            "framework_idempotency_fenced",
            "Completions refused because another worker had taken the key "
            "over (its lease had expired).",
            ["queue"],
            registry=r,
        )
        self.store_healthy = Gauge(
            "framework_idempotency_store_healthy",
            "1 while the idempotency store answers, 0 after a failed call until the next success.",
            ["queue"],
            registry=r,
        )
        self.heartbeats = Counter(
            "framework_handler_heartbeats",
            "ctx.heartbeat() calls of the queue's handlers (progress reports).",
            ["queue"],
            registry=r,
        )
        self.oldest_handler = Gauge(
            "framework_handler_oldest_running_seconds",
            "Age of the longest-running delivery being handled now (0: none).",
            ["queue"],
            registry=r,
        )
        self.handler_silence = Gauge(
            "framework_handler_seconds_since_progress",
            "Longest time a delivery being handled now has gone without ctx.heartbeat() "
            "(since its start if it never called it; 0: none running). Alert when it nears "
            "the worker's timeout: a hung handler.",
            ["queue"],
            registry=r,
        )
        self.breaker = Gauge(
            "framework_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["queue", "breaker"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of everything on this registry."""
        for update in self._before_render:
            update()
        return generate_latest(self.registry)

    def observer(self, queue: str) -> SettlementObserver:
        """A `WorkerStats` observer that counts settlements of `queue`."""

        def observe(settlement: Settlement, duration: float) -> None:
            self.record(queue, settlement, duration)

        return observe

    def record(self, queue: str, settlement: Settlement, duration: float) -> None:
        """Count one applied settlement and, if its handler ran, its duration."""
        timed = True
        match settlement:
            case Ack(duplicate=True):
                self.duplicates.labels(queue).inc()
                timed = False
            case Ack():
                self.handled.labels(queue).inc()
            case Retry(waiting=True):
                timed = False  # one hop of a long wait: the handler did not run
            case Retry(retry_later=int()):
                self.retried.labels(queue).inc()
                self.retry_laters.labels(queue).inc()
            case Retry():
                self.retried.labels(queue).inc()
                self.failed.labels(queue, "transient").inc()
            case DeadLetter(reason=reason):
                self.dead_lettered.labels(queue, reason.value).inc()
                self.failed.labels(queue, reason.value).inc()
                if reason is Reason.EXPIRED:
                    self.expired.labels(queue).inc()
                timed = reason not in _UNTIMED
        if timed:
            self.latency.labels(queue).observe(duration)

    def watch(self, worker: Worker) -> None:
        """Count `worker`'s settlements, report its in-flight deliveries and follow the state
        of each of its breakers (set on every transition)."""
        queue = worker.spec.queue
        worker.stats.observers.append(self.observer(queue))
        refused = self.replies_refused.labels(queue)
        worker.stats.refusal_observers.append(lambda: refused.inc())
        self._watch_sla(worker.stats, queue)
        self.in_flight.labels(queue).set_function(lambda: worker.stats.in_flight)
        for breaker in worker.breakers:
            self.set_breaker_state(queue, breaker.name, breaker.state)

            def on_transition(
                b: CircuitBreaker, _old: BreakerState, new: BreakerState, queue: str = queue
            ) -> None:
                self.set_breaker_state(queue, b.name, new)

            breaker.add_listener(on_transition)
        if worker.database:
            outbox = worker.outbox_stats
            self.outbox_backlog.labels(queue).set_function(lambda: outbox.backlog)
            outbox.latency_observers.append(self.outbox_latency.labels(queue).observe)

        lag, stalls = self.loop_lag.labels(queue), self.loop_stalls.labels(queue)
        threshold = worker.loop_lag.threshold

        def observe_lag(seconds: float) -> None:
            lag.observe(seconds)
            if seconds >= threshold:
                stalls.inc()

        worker.loop_lag.observers.append(observe_lag)
        health = worker.store_health
        self.store_healthy.labels(queue).set_function(lambda: int(health.healthy))
        failures, fenced = self.store_failures.labels(queue), self.fenced.labels(queue)
        progress, heartbeats = worker.progress, self.heartbeats.labels(queue)
        self.oldest_handler.labels(queue).set_function(progress.oldest_age)
        self.handler_silence.labels(queue).set_function(progress.longest_silence)
        seen = [health.failures, health.fenced, progress.heartbeats]

        def catch_up() -> None:  # counters follow the health record at each scrape
            failures.inc(health.failures - seen[0])
            fenced.inc(health.fenced - seen[1])
            heartbeats.inc(progress.heartbeats - seen[2])
            seen[:] = [health.failures, health.fenced, progress.heartbeats]

        self._before_render.append(catch_up)
        for limit in worker.rate_limits:
            self._watch_rate_limit(queue, limit)

    def _watch_rate_limit(self, queue: str, limit: RateLimit) -> None:
        """Counters that follow `limit.stats` at each scrape, every series present at 0."""
        stats = limit.stats
        outcomes = ("immediate", "waited", "refused")
        calls = {o: self.rate_limit_calls.labels(queue, limit.name, o) for o in outcomes}
        failures = self.rate_limit_redis_failures.labels(queue, limit.name)
        self.rate_limit_shared.labels(queue, limit.name).set_function(lambda: int(stats.shared))
        seen = dict.fromkeys((*outcomes, "redis_failures"), 0)

        def catch_up() -> None:
            for outcome, counter in (*calls.items(), ("redis_failures", failures)):
                value = getattr(stats, outcome)
                counter.inc(value - seen[outcome])
                seen[outcome] = value

        self._before_render.append(catch_up)

    def _watch_sla(self, stats: WorkerStats, queue: str) -> None:
        """Time in queue and breaches of `queue`, every series present (at 0) from the start."""
        waits, skewed = self.time_in_queue.labels(queue), self.skewed_timestamps.labels(queue)
        breaches = {kind: self.sla_breaches.labels(queue, kind.value) for kind in Breach}

        def observe_wait(seconds: float | None) -> None:
            if seconds is None:
                skewed.inc()
            else:
                waits.observe(seconds)

        stats.wait_observers.append(observe_wait)
        stats.breach_observers.append(lambda kind: breaches[kind].inc())

    @staticmethod
    def refresh_breakers(worker: Worker) -> None:
        """Read each breaker's state: an open breaker whose reset timeout passed becomes
        half-open only when read, and the transition then reaches the gauge."""
        for breaker in worker.breakers:
            _ = breaker.state

    def set_queue_stats(self, stats: QueueStats) -> None:
        """Update the depth gauges of one worker queue (unknown values are left as they were)."""
        q = stats.name
        self.ready.labels(q).set(stats.ready)
        self.retry_depth.labels(q).set(stats.retry)
        self.dlq_depth.labels(q).set(stats.dlq)
        if stats.unacked is not None:
            self.unacked.labels(q).set(stats.unacked)
        if stats.suggested_replicas is not None:
            self.replicas.labels(q).set(stats.suggested_replicas)

    def set_breaker_state(self, queue: str, breaker: str, state: BreakerState) -> None:
        """Report a circuit breaker's state (`watch` calls it on every transition)."""
        self.breaker.labels(queue, breaker).set(BREAKER_GAUGE[state])
