"""`bus.outbox(conn)`: add messages to the outbox inside a transaction the caller owns.

For code that is not a handler (a web endpoint) and already has its own connection: the
rows are inserted on that connection, so they commit or roll back with the caller's own
writes. A relay on the same database (a worker's, or `framework.outbox.Relay`) publishes
them within its poll interval. The tables must exist: open the database once with
`open_database` (or run a worker or relay on it) before.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any

from framework.errors import ConfigurationError
from framework.messages import Command, Event, Message, require_kind
from framework.outbox.rows import NewRow, envelope_json, routing_of
from framework.outbox.unit_of_work import Transaction
from framework.publish.outgoing import outgoing_envelope
from framework.wire.keys import new_key

_SQLITE_INSERT = """INSERT INTO fw_outbox (stream, message_key, exchange, routing_key, mandatory,
    envelope, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
_POSTGRES_INSERT = """INSERT INTO fw_outbox (stream, message_key, exchange, routing_key,
    mandatory, envelope, body, created_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)"""


class OutboxWriter:
    """Adds messages to the outbox through a connection inside the caller's transaction.

    `connection`: a `sqlite3.Connection` or an asyncpg connection with a transaction open,
    or a `framework.outbox.Transaction`. Messages written through one writer keep their
    order (one stream); pass `stream=` to share an order across writers.
    """

    def __init__(self, connection: Any, *, app_id: str, stream: str | None = None) -> None:
        self._connection = connection
        self._app_id = app_id
        self._stream = stream or new_key()

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
    ) -> str:
        """Add an event; it is published once the caller's transaction has committed."""
        require_kind(event, command=False, verb="publish")
        return await self._add(event, idempotency_key, correlation_id, deadline, ttl)

    async def send(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
    ) -> str:
        """Add a command; it is sent once the caller's transaction has committed."""
        require_kind(command, command=True, verb="send")
        return await self._add(command, idempotency_key, correlation_id, deadline, ttl)

    async def _add(
        self,
        message: Message,
        key: str | None,
        correlation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
    ) -> str:
        key = key or new_key()
        conn = self._connection
        if isinstance(conn, Transaction):
            if isinstance(message, Command):
                return await conn.send(
                    message,
                    idempotency_key=key,
                    correlation_id=correlation_id,
                    deadline=deadline,
                    ttl=ttl,
                )
            assert isinstance(message, Event)
            return await conn.publish(
                message,
                idempotency_key=key,
                correlation_id=correlation_id,
                deadline=deadline,
                ttl=ttl,
            )
        envelope, _ = outgoing_envelope(
            message,
            key,
            app_id=self._app_id,
            correlation_id=correlation_id,
            deadline=deadline,
            ttl=ttl,
        )
        exchange, routing_key, mandatory = routing_of(message)
        row = NewRow(self._stream, exchange, routing_key, mandatory, envelope)
        values = (
            row.stream,
            row.key,
            row.exchange,
            row.routing_key,
            row.mandatory,
            envelope_json(envelope),
            envelope.body,
            time.time(),
        )
        if isinstance(conn, sqlite3.Connection):
            if not conn.in_transaction:
                raise ConfigurationError(
                    "bus.outbox(conn): the SQLite connection has no open transaction; "
                    "run BEGIN (or use `with conn:`) so the message commits with your rows"
                )
            conn.execute(_SQLITE_INSERT, values)
            return key
        if _is_asyncpg(conn):
            if not conn.is_in_transaction():
                raise ConfigurationError(
                    "bus.outbox(conn): the asyncpg connection has no open transaction; "
                    "use `async with conn.transaction():` so the message commits with it"
                )
            await conn.execute(_POSTGRES_INSERT, *values)
            return key
        raise ConfigurationError(
            f"bus.outbox() takes a sqlite3.Connection, an asyncpg connection or a "
            f"framework.outbox.Transaction, not {type(conn).__name__}"
        )


def _is_asyncpg(conn: Any) -> bool:
    try:
        import asyncpg
        from asyncpg.pool import PoolConnectionProxy
    except ImportError:
        return False
    return isinstance(conn, asyncpg.Connection | PoolConnectionProxy)
