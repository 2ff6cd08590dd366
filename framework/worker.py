"""The Worker base class: subclass it, set `queue`, write `handle`. It keeps only the run loop.

Decoding, idempotency and the handler live in `handling`, the fate of a delivery in
`settlement`, the moves to retry/DLQ in `settle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from framework.consume.breaker_gate import BreakerGate
from framework.consume.decisions import (
    DeadLetter,
    Failed,
    Handled,
    Outcome,
    Settlement,
    decide,
)
from framework.consume.handling import HandlingPolicy, process
from framework.consume.heartbeat import Beat, HandlerProgress
from framework.consume.loop_lag import LoopLagWatchdog
from framework.consume.ordering import retry_in_place
from framework.consume.partitions import subscribe_worker
from framework.consume.settle import ACK_EACH, settle_or_return
from framework.consume.settlement_log import log_settlement
from framework.consume.shutdown import ShutdownBudget, within
from framework.consume.worker_spec import WorkerSpec, build_spec, check_spelling
from framework.context import Context
from framework.errors import ConfigurationError, FrameworkError
from framework.idempotency import IdempotencyStore, open_store
from framework.idempotency.health import StoreHealth
from framework.idempotency.leases import LeaseKeeper, install_tracking_executor
from framework.idempotency.sharing import warn_if_unshared
from framework.messages import Message
from framework.ops.logs import bind_delivery, trace_fields, unbind_delivery
from framework.ops.sla import published_at, time_in_queue
from framework.ops.stats import WorkerStats
from framework.outbox.relay import RelayStats
from framework.outbox.runtime import WorkerDatabase
from framework.publish.reply import error_reply_message, may_reply_to, reply_message
from framework.resilience.breaker import CircuitBreaker
from framework.resilience.load_status import start_load_reports
from framework.resilience.log_throttle import LogThrottle
from framework.resilience.rate_limit import RateLimit
from framework.resilience.retrying import RESUBSCRIBE
from framework.wire import names
from framework.wire.delivery import Incoming
from framework.wire.envelope import Envelope, Keyless, from_amqp
from framework.wire.port import Acker, Subscription

if TYPE_CHECKING:
    from framework.outbox.relay import Relay
    from framework.wire.transport import Transport


# Bound on consumer cancel / channel close during shutdown (a dead connection never answers).
CHANNEL_OP_BOUND = 5.0


class Worker:
    """Consumes one queue. Set the class attributes, implement `handle(self, msg, ctx)`."""

    queue: ClassVar[str] = ""
    prefetch: ClassVar[int] = 32
    max_attempts: ClassVar[int] = 5
    timeout: ClassVar[float] = 30.0
    retry_base_delay: ClassVar[float] = 1.0
    retry_max_delay: ClassVar[float] = 300.0
    retry_jitter: ClassVar[float] = 0.5
    retry_later_limit: ClassVar[int] = 20  # RetryLater per message (burn no attempt), at most
    delivery_limit: ClassVar[int] = 10
    max_queue_length: ClassVar[int | None] = None
    # seconds unused after which the broker deletes the queue, its DLQ and delay queues:
    # for a queue of one process (framework.replica.feed), never for a shared queue
    queue_expires: ClassVar[float | None] = None
    idempotency_retention: ClassVar[float] = 7 * 24 * 3600.0
    shutdown_grace: ClassVar[float] = 30.0
    idempotency_lease: ClassVar[float | None] = None  # default: timeout + 30 s
    ack_batch_size: ClassVar[int] = 512  # handled deliveries acked with one frame, at most
    ack_max_delay: ClassVar[float] = 0.025  # seconds a handled delivery waits for its ack
    service: ClassVar[str | None] = None
    breakers: tuple[CircuitBreaker, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()  # reported in metrics (framework.resilience.rate_limit)
    publishes: ClassVar[tuple[type[Message], ...]] = ()  # documentation only (asyncapi, check)
    max_body_bytes: ClassVar[int] = 1024 * 1024  # larger bodies are dead-lettered unparsed
    keyless: ClassVar[Keyless] = "reject"  # no message_id: "reject" (invalid) or "content"
    # the service's own database (sqlite:///path.db, postgresql://...): ctx.transaction(),
    # its inbox and outbox (framework.outbox); may also be set per instance in __init__
    database: str | None = None
    # order per key (framework.consume.ordering): the message field whose value orders handling;
    # its queue is split into `partitions` queues, each handled one message at a time
    ordered_by: ClassVar[str | None] = None
    partitions: ClassVar[int] = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_spelling(dict(vars(cls)), cls.__name__)

    def __init__(self, bus: Transport) -> None:
        if type(self).handle is Worker.handle:
            raise ConfigurationError(f"{type(self).__name__} must implement handle(self, msg, ctx)")
        self.spec: WorkerSpec = build_spec(type(self))
        self.bus = bus
        self.stats = WorkerStats()
        self._service = self.service or bus.service
        self._handling = HandlingPolicy(
            queue=self.spec.queue,
            message_types=self.spec.message_types,
            timeout=self.spec.timeout,
            lease=self.spec.lease,
            retention=self.spec.retention,
            clock_skew=bus.settings.clock_skew_tolerance,
            max_body_bytes=self.spec.max_body_bytes,
            store_timeout=bus.settings.idempotency_timeout,
        )
        self.store_health = StoreHealth()  # `/readyz` is 503 while store calls fail
        self.loop_lag = LoopLagWatchdog()
        self.progress = HandlerProgress()  # running handlers and their ctx.heartbeat() calls
        self._deferral_log = LogThrottle()  # deferrals: one line per error per interval
        self._leases: LeaseKeeper | None = None
        self._log = structlog.get_logger("framework.worker").bind(
            service=self._service, queue=self.spec.queue
        )
        self._acks: Acker = ACK_EACH  # the port's (coalescing) acker from `run` on
        self._deliveries: set[asyncio.Task[None]] = set()
        # deliveries whose handler is still running: the only ones shutdown may cancel
        # (settlement - confirmed move, then ack - is never interrupted)
        self._handling_now: set[asyncio.Task[None] | None] = set()
        self._handler_log = structlog.get_logger(self._service)
        self._ready: asyncio.Future[None] | None = None
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False
        self._consumer: Subscription | None = None  # while running (tests and debugging look)
        self._watchdog: asyncio.Task[None] | None = None  # keeps the subscription: `alive`
        self.shutdown: ShutdownBudget | None = None  # from the stop request on
        self._database: WorkerDatabase | None = None  # while running, if `database` is set
        self.outbox_stats = RelayStats()  # what its relay published (framework.ops.metrics)

    async def handle(self, msg: Any, ctx: Context) -> Any:
        """Handle one message. Raise `PermanentError` to dead-letter it; anything else retries."""
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Declare topology, consume until `stop()`, then drain in-flight handlers and close.

        While any of `breakers` is open the consumer is paused (messages stay queued).
        """
        if self._started:
            raise FrameworkError(f"{type(self).__name__}.run() was already called")
        self._started = True
        ready = self._ready_future()
        consumer: Subscription | None = None
        gate: asyncio.Task[None] | None = None
        watchdog: asyncio.Task[None] | None = None
        guards: list[asyncio.Task[None]] = []
        try:
            if self.database:
                self._database = await WorkerDatabase.open(
                    self.database,
                    self.bus,
                    app_id=self._service,
                    retention=self.spec.retention,
                    stats=self.outbox_stats,
                )
            guards = self._start_guards()
            self._acks = self.bus.port.acker(
                max_batch=self.ack_batch_size,
                max_delay=self.ack_max_delay,
                prefetch=self.spec.prefetch,
            )
            consumer = await subscribe_worker(self.bus.port, self.spec, self._on_message)
            await self.bus.declare(type(self))
            self._consumer = consumer
            await consumer.start(self.spec.prefetch)
            if self.breakers:
                gate = asyncio.create_task(
                    BreakerGate(self.breakers, consumer, self.spec.prefetch, self.spec.queue).run()
                )
            watchdog = self._watchdog = asyncio.create_task(self._keep_subscribed(consumer))
            self._log.info("worker.consuming", prefetch=self.spec.prefetch)
            await warn_if_unshared(self.bus, self.spec.topology.queues[0].name, self._log)
            ready.set_result(None)
            await self._stop_requested.wait()
            self.shutdown = ShutdownBudget.start(self.grace)
            await _cancel(gate)
            await _cancel(watchdog)
            await self._drain(consumer, self.shutdown)
        except BaseException as exc:
            if not ready.done():
                failure = exc if isinstance(exc, Exception) else FrameworkError("run cancelled")
                ready.set_exception(failure)
            raise
        finally:
            budget = self.shutdown or ShutdownBudget.start(0.0)  # cancelled: no grace
            await _cancel(gate)
            await _cancel(watchdog)
            await self._cancel_remaining(budget)
            for guard in guards:  # after the handlers: leases are renewed until they end
                await _cancel(guard)
            for limit in self.rate_limits:  # this loop's Redis connection, if any
                await within(
                    limit.aclose(), budget.closing_remaining(), self._log, "worker.close_failed"
                )
            await within(
                self._acks.close(), budget.closing_remaining(), self._log, "worker.ack_flush_failed"
            )
            if self._database is not None:
                await within(
                    self._database.close(),
                    budget.closing_remaining(),
                    self._log,
                    "worker.database_close_failed",
                )
            await _close_subscription(consumer, self._log, budget.closing_remaining())
            self._stopped.set()
            self._log.info("worker.stopped", **self.stats.as_dict())

    def _start_guards(self) -> list[asyncio.Task[None]]:
        """The loop-lag watchdog and the renewal of held leases (owned, cancelled by run)."""
        install_tracking_executor(asyncio.get_running_loop())
        url = self.bus.idempotency_url
        timeout = self._handling.store_timeout

        async def opener() -> IdempotencyStore:
            return await open_store(url or "memory://", timeout=timeout)

        self._leases = LeaseKeeper(
            self.bus.idempotency,
            self.spec.lease / 3,
            opener=None if url is None else opener,
            call_timeout=timeout,
        )
        return [
            asyncio.create_task(self.loop_lag.run()),
            asyncio.create_task(self._leases.run()),
            *start_load_reports(self),  # FRAMEWORK_SHED_BY_FORECAST: fw.load reports
        ]

    async def _keep_subscribed(self, consumer: Subscription) -> None:
        """Subscribe again when the subscription is lost: the broker cancels a consumer
        whose queue was deleted (declare it again, with its bindings), and a reopened
        channel (reconnect, channel error) no longer carries it. Never idle silently: a
        failed attempt (the broker went away again) is retried with jittered backoff."""
        failures = 0
        while True:
            await consumer.resubscribe_needed.wait()
            self._log.warning(
                "worker.resubscribing",
                hint="channel reopened or consumer cancelled by the broker "
                "(queue deleted?): re-declaring and subscribing again",
            )
            try:
                await self.bus.declare(type(self))
                await consumer.restart()
            except Exception as exc:  # noqa: BLE001 - retried with backoff, never idle
                consumer.resubscribe_needed.set()
                failures += 1
                delay = RESUBSCRIBE.delay(failures, random.random())
                self._log.warning(
                    "worker.resubscribe_failed", error=repr(exc), retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)
            else:
                failures = 0
                self._log.info("worker.resubscribed")

    async def wait_ready(self) -> None:
        """Return once topology is declared and consuming has started (raises if run failed)."""
        await asyncio.shield(self._ready_future())

    async def stop(self) -> None:
        """Stop consuming, let in-flight handlers finish (bounded by `shutdown_grace`), close."""
        self._stop_requested.set()
        if self._started:
            await self._stopped.wait()

    @property
    def relay(self) -> Relay | None:
        """The relay publishing this worker's outbox (while it runs with a `database`)."""
        return None if self._database is None else self._database.relay

    @property
    def consuming(self) -> bool:
        """True from ready (topology declared, consumer started) until `stop()`: `/readyz`."""
        ready = self._ready
        if ready is None or not ready.done() or ready.cancelled() or ready.exception():
            return False
        return not self._stop_requested.is_set()

    @property
    def receiving(self) -> bool:
        """`consuming` and subscribed: False while a lost subscription (reopened channel,
        consumer cancelled by the broker) is not restored yet. The broker side of `/readyz`
        (with the bus's connections being up)."""
        consumer = self._consumer
        return self.consuming and consumer is not None and not consumer.resubscribe_needed.is_set()

    @property
    def alive(self) -> bool:
        """False once the run loop has ended or its subscription keeper died: the process is
        stuck and a restart helps (`/healthz`). A broker that is away does not make it
        False: the worker reconnects and resubscribes by itself."""
        watchdog = self._watchdog
        return not self._stopped.is_set() and (watchdog is None or not watchdog.done())

    def _ready_future(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    @property
    def grace(self) -> float:
        """Seconds a stop may spend on in-flight work: `FRAMEWORK_SHUTDOWN_GRACE` (settings)
        if set, else the class's `shutdown_grace`. Closing adds at most `CLOSE_MARGIN`."""
        configured = self.bus.settings.shutdown_grace
        return self.spec.shutdown_grace if configured is None else configured

    async def _drain(self, consumer: Subscription, budget: ShutdownBudget) -> None:
        self._log.info("worker.draining", in_flight=len(self._deliveries), grace_s=budget.grace)
        try:
            async with asyncio.timeout(min(CHANNEL_OP_BOUND, budget.remaining())):
                await consumer.pause()
        except Exception as exc:  # noqa: BLE001 - channel gone: deliveries return anyway
            self._log.warning("worker.cancel_failed", error=repr(exc))
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=budget.remaining())

    async def _cancel_remaining(self, budget: ShutdownBudget) -> None:
        """Past the grace, cancel every delivery still running, handling or settling: it is
        not acked and returns to the queue (a move confirmed but not acked is a duplicate
        the idempotency store absorbs). Never acks what was not handled."""
        pending = [t for t in self._deliveries if not t.done()]
        handling = sum(1 for t in pending if t in self._handling_now)
        for task in pending:
            task.cancel()
        if pending:
            self._log.warning(
                "worker.cancelled_in_flight",
                count=len(pending),
                handling=handling,
                settling=len(pending) - handling,
                hint="not acked: the broker delivers them again",
            )
            await asyncio.wait(pending, timeout=budget.closing_remaining())

    # ---- one delivery -----------------------------------------------------------------

    async def _on_message(self, incoming: Incoming) -> None:
        """Handle one delivery in the task aiormq (or the in-memory bus) started for it:
        no extra task; registered so shutdown can drain it or cancel its handler."""
        self._acks.delivered(incoming)
        me = asyncio.current_task()
        if me is None:  # pragma: no cover - deliveries always arrive in a task
            return
        envelope = from_amqp(
            incoming, keyless=self.spec.keyless, max_attempt=self.spec.policy.max_attempts
        )
        published = published_at(envelope)
        if published is not None:
            self.stats.waited(time_in_queue(published, time.time(), self._handling.clock_skew))
        bound = bind_delivery(
            {
                "service": self._service,
                "queue": self.spec.queue,
                "message_id": envelope.message_id,
                "correlation_id": envelope.correlation_id,
                "attempt": envelope.attempt,
                **trace_fields(envelope.traceparent),
            }
        )
        self._deliveries.add(me)
        self._handling_now.add(me)
        self.stats.in_flight += 1
        beat = self.progress.start()
        tracing = self.bus.tracing  # OpenTelemetry: a `process` span around it all, if on
        span = None if tracing is None else tracing.delivery(envelope, self.spec.queue)
        started = time.perf_counter()
        try:
            try:
                outcome = await self._process(envelope, beat)
                duration = time.perf_counter() - started
                settlement = decide(outcome, envelope.attempt, self.spec.policy, random.random)
                if self.spec.ordering is not None:  # retried in place (framework.consume.ordering)
                    while (again := retry_in_place(settlement, envelope)) is not None:
                        # later messages of the key must not overtake it: hold it, wait, redo
                        self.stats.record(settlement, duration, _timed_out(outcome))
                        log_settlement(settlement, self._deferral_log)
                        await asyncio.sleep(again[0])
                        envelope, started = again[1], time.perf_counter()
                        outcome = await self._process(envelope, beat)
                        duration = time.perf_counter() - started
                        settlement = decide(
                            outcome, envelope.attempt, self.spec.policy, random.random
                        )
            finally:
                self.stats.in_flight -= 1
                self.progress.finish(beat)
                self._handling_now.discard(me)
            if span is not None:  # recorded; a retry or DLQ copy links back to this attempt
                envelope = span.settled(settlement, envelope)
            await self._settle(settlement, outcome, incoming, envelope, duration)
        finally:
            if span is not None:
                span.end()
            self._deliveries.discard(me)
            unbind_delivery(bound)

    async def _process(self, envelope: Envelope, beat: Beat) -> Outcome:
        """`handling.process` for one attempt; a bug in it fails the attempt, never strands
        the delivery."""
        try:
            return await process(
                envelope,
                self._handling,
                self.bus.idempotency,
                self._call_handler,
                lambda envelope: self._context(envelope, beat),
                None if self._database is None else self._database.seen,
                leases=self._leases,
                health=self.store_health,
            )
        except Exception as exc:  # noqa: BLE001 - a bug must not strand the delivery
            self._log.exception("delivery.processing_error")
            return Failed(f"{type(exc).__name__}: {exc}")

    def _call_handler(self, message: Message, ctx: Context) -> Awaitable[Any]:
        return self.handle(message, ctx)  # its coroutine, awaited by `process`

    def _context(self, envelope: Envelope, beat: Beat | None = None) -> Context:
        return Context(
            bus=self.bus,
            queue=self.spec.queue,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            attempt=envelope.attempt,
            causation_id=envelope.causation_id,
            deadline_ms=envelope.deadline_ms,
            traceparent=envelope.traceparent,
            headers=envelope.headers,
            log=self._handler_log,
            database=self._database,
            _span=None if self.bus.tracing is None else self.bus.tracing.current_traceparent(),
            _beat=None if beat is None else self.progress.reporter(beat, self._leases, self.bus),
        )

    async def _settle(
        self,
        settlement: Settlement,
        outcome: Outcome,
        incoming: Incoming,
        envelope: Envelope,
        duration: float = 0.0,
    ) -> None:
        if envelope.reply_to:
            await self._reply(settlement, outcome, envelope)
        try:
            await settle_or_return(
                settlement,
                incoming,
                envelope,
                self.spec.queue,
                self.bus.port,
                acker=self._acks,
            )
        except Exception as exc:  # noqa: BLE001 - logged; the delivery was given back
            # Not acked: returned to the queue (or redelivered when the channel recovers).
            self.stats.settle_failures += 1
            self._log.error(
                "delivery.settle_failed",
                settlement=type(settlement).__name__,
                error=repr(exc),
                hint="returned to the queue for redelivery",
            )
            return
        self.stats.record(settlement, duration, _timed_out(outcome))
        log_settlement(settlement, self._deferral_log)

    async def _reply(self, settlement: Settlement, outcome: Outcome, envelope: Envelope) -> None:
        """Answer a request: the handler's result, or why it failed for good. Only to a
        direct reply-to name: any other `reply_to` is refused (the request is settled)."""
        reply_to = str(envelope.reply_to)
        if not may_reply_to(reply_to):
            self.stats.reply_refused()
            self._log.warning(
                "request.reply_refused",
                reply_to=reply_to[:200],
                hint=f"replies go only to {names.DIRECT_REPLY_TO} names",
            )
            return
        if isinstance(outcome, Handled):
            message = reply_message(envelope.message_id, envelope.correlation_id, outcome.result)
        elif isinstance(settlement, DeadLetter):
            message = error_reply_message(envelope.message_id, envelope.correlation_id, settlement)
        else:
            return  # retried (or a duplicate): the requester keeps waiting within its timeout
        try:
            await self.bus.port.publish(message, "", reply_to, mandatory=False)
        except Exception as exc:  # noqa: BLE001 - requester gone? the request is settled
            self._log.warning("request.reply_failed", error=repr(exc))


async def _close_subscription(consumer: Subscription | None, log: Any, bound: float) -> None:
    """Close the consuming channel, bounded: a closed bus must not hang `stop()`."""
    if consumer is None:
        return
    try:
        async with asyncio.timeout(min(CHANNEL_OP_BOUND, bound)):
            await consumer.close()
    except Exception as exc:  # noqa: BLE001 - logged; shutdown goes on
        log.warning("worker.channel_close_failed", error=repr(exc))


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel an owned background task and wait for it to finish."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _timed_out(outcome: Outcome) -> bool:
    return isinstance(outcome, Failed) and outcome.timed_out
