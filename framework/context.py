"""What a handler sees of its delivery, and how it publishes follow-up messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from framework.consume.heartbeat import Progress, check_progress
from framework.errors import ConfigurationError
from framework.messages import Command, Event, Message
from framework.ops.traceparent import child_traceparent
from framework.outbox.database import OutboxMisuse
from framework.wire.keys import derive_key

if TYPE_CHECKING:
    from framework.outbox.runtime import WorkerDatabase
    from framework.outbox.unit_of_work import Transaction
    from framework.wire.transport import Transport


@dataclass
class Context:
    """Per-delivery context passed to `Worker.handle`.

    Messages published through it get keys derived from the incoming key, so a retried
    handler re-publishes the same keys; they carry this conversation's correlation_id.
    """

    bus: Transport
    queue: str
    message_id: str
    correlation_id: str
    attempt: int
    causation_id: str | None = None
    deadline_ms: int | None = None
    traceparent: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    log: Any = None
    database: WorkerDatabase | None = None  # the worker's `database`, if it has one
    # the `traceparent` of this delivery's OpenTelemetry span (None: tracing off): what the
    # messages published through ctx continue; without it, a child of `traceparent`
    _span: str | None = None
    # what `heartbeat` reports to (the worker's); None: a Context made outside a worker
    _beat: Callable[[Progress], Awaitable[None]] | None = None
    _published: int = 0
    _tx: Transaction | None = None
    _committed: bool = False

    @property
    def deadline(self) -> datetime | None:
        """When the sender stops caring about the result (None: no deadline)."""
        if self.deadline_ms is None:
            return None
        return datetime.fromtimestamp(self.deadline_ms / 1000, tz=UTC)

    async def heartbeat(self, progress: str | float | None = None) -> None:
        """Report that this handler is alive and, optionally, how far it got (a text or a
        number such as a fraction done). Call it now and then in a long-running handler:
        it renews the delivery's idempotency lease at once if a renewal is due, and feeds
        the progress metrics (`framework_handler_heartbeats`, the longest silence of a
        running handler) and a debug log line. It does not extend `timeout`: the handler
        is still cancelled when that passes.

        Raises `LeaseLost` when another worker has taken this delivery's key over (the
        lease lapsed while the store was unreachable): stop, or the work runs twice.
        """
        checked = check_progress(progress)
        if self._beat is not None:
            await self._beat(checked)

    def _next_key(self, message: Message) -> str:
        self._published += 1
        return derive_key(self.message_id, self._published, message.type_name)

    async def publish(self, event: Event, *, idempotency_key: str | None = None) -> str:
        """Publish an event caused by this delivery; returns its (derived) key once confirmed."""
        key = idempotency_key or self._next_key(event)
        return await self._emitter("publish").publish(
            event,
            idempotency_key=key,
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            traceparent=self._span or child_traceparent(self.traceparent),
        )

    async def send(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
        delay: float | None = None,
        not_before: datetime | None = None,
    ) -> str:
        """Send a command caused by this delivery; returns its (derived) key once confirmed.

        `delay` / `not_before` schedule it as `Bus.send` does (not inside a transaction)."""
        key = idempotency_key or self._next_key(command)
        emitter = self._emitter("send")
        fields: dict[str, Any] = {
            "idempotency_key": key,
            "correlation_id": self.correlation_id,
            "causation_id": self.message_id,
            "traceparent": self._span or child_traceparent(self.traceparent),
            "deadline": deadline,
            "ttl": ttl,
        }
        if delay is None and not_before is None:
            return await emitter.send(command, **fields)
        if emitter is not self.bus:
            raise ConfigurationError(
                "a scheduled send (delay= / not_before=) cannot go through the outbox yet: "
                "send it before the `async with ctx.transaction()` block (a retried handler "
                "sends it again under the same derived key), or without a delay"
            )
        return await self.bus.send(command, delay=delay, not_before=not_before, **fields)

    # ---- the unit of work (framework.outbox) --------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """`async with ctx.transaction() as tx:` -- this delivery's inbox row, your writes
        (`tx.execute`, `tx.connection`) and everything published through `ctx` inside the
        block commit together; the messages go out right after the commit. A redelivery of
        a committed delivery is acked as a duplicate without running the handler."""
        if self.database is None:
            raise ConfigurationError(
                "ctx.transaction() needs the worker's database: set `database = "
                '"sqlite:///service.db"` (or a postgresql:// URL) on the Worker'
            )
        if self._tx is not None or self._committed:
            raise OutboxMisuse(
                "one ctx.transaction() per delivery: put all its writes and "
                "messages in one `async with` block"
            )
        return self._transaction(self.database)

    @asynccontextmanager
    async def _transaction(self, database: WorkerDatabase) -> AsyncIterator[Transaction]:
        async with database.transaction(self.queue, self.message_id) as tx:
            self._tx = tx
            try:
                yield tx
            finally:
                self._tx = None
        self._committed = True

    def _emitter(self, verb: str) -> Transaction | Transport:
        """Inside the transaction its outbox, else the bus; after the commit a publish could
        be lost, so neither."""
        if self._tx is not None:
            return self._tx
        if self._committed:
            raise OutboxMisuse(
                f"ctx.{verb}() after ctx.transaction() committed would be lost if the "
                "process died before it (a redelivery is acked as a duplicate without "
                f"running the handler): move the {verb} inside the `async with` block"
            )
        return self.bus
