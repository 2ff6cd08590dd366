"""The Worker base class: subclass it, set `queue`, write `handle`. It keeps only the run loop.

Decoding, idempotency and the handler live in `handling`, the fate of a delivery in
`settlement`, the moves to retry/DLQ in `settle`.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from framework.context import Context
from framework.envelope import Envelope, from_amqp
from framework.errors import ConfigurationError, FrameworkError
from framework.handling import HandlingPolicy, process
from framework.messages import Message
from framework.settle import apply_settlement
from framework.settlement import Ack, DeadLetter, Retry, Settlement, decide
from framework.stats import WorkerStats
from framework.worker_spec import WorkerSpec, build_spec, check_spelling

if TYPE_CHECKING:
    from framework.bus import Bus


class Worker:
    """Consumes one queue. Set the class attributes, implement `handle(self, msg, ctx)`."""

    queue: ClassVar[str] = ""
    prefetch: ClassVar[int] = 32
    max_attempts: ClassVar[int] = 5
    timeout: ClassVar[float] = 30.0
    retry_base_delay: ClassVar[float] = 1.0
    retry_max_delay: ClassVar[float] = 300.0
    retry_jitter: ClassVar[float] = 0.5
    delivery_limit: ClassVar[int] = 10
    max_queue_length: ClassVar[int | None] = None
    idempotency_retention: ClassVar[float] = 7 * 24 * 3600.0
    shutdown_grace: ClassVar[float] = 30.0
    service: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_spelling(dict(vars(cls)), cls.__name__)

    def __init__(self, bus: Bus) -> None:
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
            lease=self.spec.timeout + 30.0,
            retention=self.spec.retention,
            clock_skew=bus.settings.clock_skew_tolerance,
        )
        self._log = structlog.get_logger("framework.worker").bind(
            service=self._service, queue=self.spec.queue
        )
        self._deliveries: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Future[None] | None = None
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False

    async def handle(self, msg: Any, ctx: Context) -> Any:
        """Handle one message. Raise `PermanentError` to dead-letter it; anything else retries."""
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Declare topology, consume until `stop()`, then drain in-flight handlers and close."""
        if self._started:
            raise FrameworkError(f"{type(self).__name__}.run() was already called")
        self._started = True
        ready = self._ready_future()
        channel: AbstractChannel | None = None
        try:
            channel = await self.bus.consume_channel(self.spec.prefetch)
            await self.bus.declare(type(self))
            main_queue = self.spec.topology.queues[0]
            queue = await channel.declare_queue(
                main_queue.name, durable=True, arguments=dict(main_queue.arguments)
            )
            tag = await queue.consume(self._on_message)
            self._log.info("worker.consuming", prefetch=self.spec.prefetch)
            ready.set_result(None)
            await self._stop_requested.wait()
            await self._drain(queue, tag)
        except BaseException as exc:
            if not ready.done():
                failure = exc if isinstance(exc, Exception) else FrameworkError("run cancelled")
                ready.set_exception(failure)
            raise
        finally:
            await self._cancel_remaining()
            if channel is not None and not channel.is_closed:
                await channel.close()
            self._stopped.set()
            self._log.info("worker.stopped", **self.stats.as_dict())

    async def wait_ready(self) -> None:
        """Return once topology is declared and consuming has started (raises if run failed)."""
        await asyncio.shield(self._ready_future())

    async def stop(self) -> None:
        """Stop consuming, let in-flight handlers finish (bounded by `shutdown_grace`), close."""
        self._stop_requested.set()
        if self._started:
            await self._stopped.wait()

    @property
    def consuming(self) -> bool:
        """True from ready (topology declared, consumer started) until `stop()`: `/readyz`."""
        ready = self._ready
        if ready is None or not ready.done() or ready.cancelled() or ready.exception():
            return False
        return not self._stop_requested.is_set()

    def _ready_future(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def _drain(self, queue: AbstractQueue, tag: str) -> None:
        self._log.info("worker.draining", in_flight=len(self._deliveries))
        try:
            await queue.cancel(tag)
        except Exception as exc:  # channel already gone: deliveries return to the queue anyway
            self._log.warning("worker.cancel_failed", error=repr(exc))
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=self.spec.shutdown_grace)

    async def _cancel_remaining(self) -> None:
        """Cancel handlers past the grace period (unacked: they return to the queue)."""
        pending = [t for t in self._deliveries if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self._log.warning("worker.cancelled_in_flight", count=len(pending))
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)

    # ---- one delivery -----------------------------------------------------------------

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._deliver(incoming))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        envelope = from_amqp(incoming)
        with structlog.contextvars.bound_contextvars(
            service=self._service,
            queue=self.spec.queue,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            attempt=envelope.attempt,
        ):
            self.stats.in_flight += 1
            started = time.perf_counter()
            try:
                outcome = await process(
                    envelope, self._handling, self.bus.idempotency, self._call_handler,
                    self._context,
                )
            finally:
                self.stats.in_flight -= 1
            duration = time.perf_counter() - started
            settlement = decide(outcome, envelope.attempt, self.spec.policy, random.random)
            settling = asyncio.create_task(self._settle(settlement, incoming, envelope, duration))
            self._settling.add(settling)
            settling.add_done_callback(self._settling.discard)
            await asyncio.shield(settling)

    async def _call_handler(self, message: Message, ctx: Context) -> None:
        await self.handle(message, ctx)

    def _context(self, envelope: Envelope) -> Context:
        return Context(
            bus=self.bus,
            queue=self.spec.queue,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            attempt=envelope.attempt,
            causation_id=envelope.causation_id,
            deadline_ms=envelope.deadline_ms,
            traceparent=envelope.traceparent,
            headers=dict(envelope.headers),
            log=structlog.get_logger(self._service),
        )

    async def _settle(
        self, settlement: Settlement, incoming: AbstractIncomingMessage, envelope: Envelope,
        duration: float = 0.0,
    ) -> None:
        try:
            await apply_settlement(
                settlement, incoming, envelope, self.spec.queue, self.bus.publisher
            )
        except Exception as exc:
            # Not acked: the broker redelivers it once the channel recovers; never lost.
            self.stats.settle_failures += 1
            self._log.error("delivery.settle_failed", settlement=type(settlement).__name__,
                            error=repr(exc))
            return
        self.stats.record(settlement, duration)
        _log_settlement(settlement)


def _log_settlement(settlement: Settlement) -> None:
    log = structlog.get_logger("framework.worker")
    match settlement:
        case Ack(duplicate=True):
            log.info("delivery.duplicate_skipped")
        case Ack():
            log.debug("delivery.handled")
        case Retry():
            log.warning("delivery.retry_scheduled", delay_ms=settlement.delay_ms,
                        next_attempt=settlement.next_attempt, error=settlement.error)
        case DeadLetter():
            log.error("delivery.dead_lettered", reason=settlement.reason.value,
                      error=settlement.error, attempts=settlement.attempts)
