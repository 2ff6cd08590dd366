"""The unit of work: one database transaction holding the inbox row, the caller's own writes
and the outbox rows of every message published through it. All commit, or none does."""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from framework.messages import Command, Event, Message, require_kind
from framework.outbox.database import AlreadyHandled, Database, OutboxMisuse, TransactionDriver
from framework.outbox.rows import NewRow, routing_of
from framework.publish.outgoing import outgoing_envelope
from framework.wire.keys import new_key

_OPEN: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
    "framework_outbox_transaction", default=None
)


class CommitRelay(Protocol):
    """What a unit of work needs of the relay that publishes its rows once committed
    (`framework.outbox.relay.Relay`): whose claim the rows start under, for how long, and
    where to hand them."""

    owner: str

    @property
    def lease(self) -> float: ...

    async def deliver(self, pending: list[Pending]) -> None: ...


def refuse_direct_publish(verb: str) -> None:
    """Raise if a transaction is open in this task: a direct publish would escape it."""
    if _OPEN.get() is not None:
        raise OutboxMisuse(
            f"bus.{verb}() inside an open outbox transaction would publish before the commit "
            f"(and even if it rolls back): use ctx.{verb}() or tx.{verb}() inside "
            "`async with ctx.transaction()`, so the message is committed with it"
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """A message committed to the outbox, kept in memory so this process can publish it."""

    row_id: int
    message: Message
    key: str
    correlation_id: str
    causation_id: str | None
    deadline_ms: int | None
    traceparent: str | None
    committed_at: float


@dataclass(frozen=True, slots=True)
class Inbox:
    """The inbox row a handler's transaction inserts: this delivery's key on its queue."""

    queue: str
    key: str
    retention: float


class Transaction:
    """An open transaction: run SQL on it, publish and send through it.

    `connection` is the driver's own connection inside the transaction (an asyncpg
    connection for PostgreSQL; for SQLite a wrapper whose `execute`, `fetch` and `run` run on
    the database's thread). `execute` and `fetch` take the database's own placeholders
    (`?` for SQLite, `$1` for PostgreSQL).
    """

    def __init__(
        self,
        driver: TransactionDriver,
        *,
        app_id: str,
        stream: str,
        owner: str | None,
        lease: float,
    ) -> None:
        self._driver = driver
        self._app_id = app_id
        self._stream = stream
        self._owner = owner
        self._lease = lease
        self._rows: list[NewRow] = []
        self._messages: list[tuple[Message, float]] = []
        self._open = True

    @property
    def connection(self) -> Any:
        return self._driver.connection

    async def execute(self, sql: str, *params: Any) -> int:
        """Run one statement in the transaction; how many rows it changed."""
        self._require_open("execute")
        return await self._driver.execute(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """Run one query in the transaction; its rows."""
        self._require_open("fetch")
        return await self._driver.fetch(sql, *params)

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Add an event to the outbox; it is published once the transaction commits."""
        require_kind(event, command=False, verb="publish")
        return await self._add(
            event, idempotency_key, correlation_id, causation_id, deadline, ttl, traceparent
        )

    async def send(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Add a command to the outbox; it is sent once the transaction commits."""
        require_kind(command, command=True, verb="send")
        return await self._add(
            command, idempotency_key, correlation_id, causation_id, deadline, ttl, traceparent
        )

    async def _add(
        self,
        message: Message,
        key: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
        traceparent: str | None,
    ) -> str:
        self._require_open("publish")
        key = key or new_key()
        envelope, _ = outgoing_envelope(
            message,
            key,
            app_id=self._app_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            deadline=deadline,
            ttl=ttl,
            traceparent=traceparent,
        )
        exchange, routing_key, mandatory = routing_of(message)
        self._rows.append(NewRow(self._stream, exchange, routing_key, mandatory, envelope))
        self._messages.append((message, time.time()))
        return key

    def _stage(self) -> None:
        """Hand the rows to the driver: they are inserted with the commit."""
        if self._rows:
            now = time.time()
            claimed_until = None if self._owner is None else now + self._lease
            self._driver.stage_outbox(self._rows, self._owner, now, claimed_until)

    def _committed(self) -> list[Pending]:
        """The messages with their row ids, once the transaction has committed."""
        return [
            Pending(
                row_id,
                message,
                row.key,
                row.envelope.correlation_id,
                row.envelope.causation_id,
                row.envelope.deadline_ms,
                row.envelope.traceparent,
                at,
            )
            for row_id, row, (message, at) in zip(
                self._driver.staged_ids, self._rows, self._messages, strict=True
            )
        ]

    def _require_open(self, verb: str) -> None:
        if not self._open:
            raise OutboxMisuse(
                f"tx.{verb}() after the transaction ended: do it inside the `async with` block"
            )

    def _close(self) -> None:
        self._open = False


@asynccontextmanager
async def unit_of_work(
    database: Database,
    relay: CommitRelay | None,
    *,
    app_id: str,
    inbox: Inbox | None = None,
    stream: str | None = None,
) -> AsyncIterator[Transaction]:
    """Open a transaction; on success commit, then let `relay` publish what it holds.

    With `inbox`, the transaction first inserts the delivery's key and raises
    `AlreadyHandled` if it is there (another transaction for this delivery committed).
    """
    owner = None if relay is None else relay.owner
    lease = 0.0 if relay is None else relay.lease
    async with database.begin() as driver:
        if inbox is not None:
            now = time.time()
            if not await driver.insert_inbox(inbox.queue, inbox.key, now, now + inbox.retention):
                raise AlreadyHandled(f"{inbox.key} on {inbox.queue} was handled before")
        tx = Transaction(
            driver, app_id=app_id, stream=stream or new_key(), owner=owner, lease=lease
        )
        token = _OPEN.set(tx)
        try:
            yield tx
            tx._stage()
        finally:
            _OPEN.reset(token)
            tx._close()
    if relay is not None and tx._rows:
        await relay.deliver(tx._committed())
