"""A recording stand-in for the Bus, so handlers run without a broker.

It implements the part of the Bus's public interface that handlers reach through Context
(`publish`, `send`) plus what Worker.__init__ reads (`service`, `settings`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from framework import Command, Context, Event, Message, Settings, Worker
from framework.outbox.relay import RelayStats
from framework.outbox.runtime import WorkerDatabase

W = TypeVar("W", bound=Worker)


class RecordingBus:
    def __init__(self) -> None:
        self.service = "unit-tests"
        self.settings = Settings()
        self.published: list[Event] = []
        self.sent: list[Command] = []
        self.keys: list[str] = []

    async def publish(self, event: Event, *, idempotency_key: str | None = None, **_: Any) -> str:
        self.published.append(event)
        return self._key(idempotency_key)

    async def send(self, command: Command, *, idempotency_key: str | None = None, **_: Any) -> str:
        self.sent.append(command)
        return self._key(idempotency_key)

    def _key(self, key: str | None) -> str:
        key = key or f"k{len(self.keys)}"
        self.keys.append(key)
        return key

    def messages(self) -> list[Message]:
        return [*self.published, *self.sent]


def context(
    bus: RecordingBus,
    message_id: str = "m-1",
    attempt: int = 1,
    database: WorkerDatabase | None = None,
) -> Context:
    """A Context for one delivery, publishing into `bus` (through `database`'s outbox if
    given, as a worker with a `database` does)."""
    import structlog

    return Context(
        bus=bus,  # type: ignore[arg-type]  # records what a handler sends; not a whole Transport
        queue="unit",
        message_id=message_id,
        correlation_id="corr-1",
        attempt=attempt,
        log=structlog.get_logger("unit"),
        database=database,
    )


@contextlib.asynccontextmanager
async def worker_database(worker: Worker, bus: RecordingBus) -> AsyncIterator[WorkerDatabase]:
    """The database a running `worker` would have (its `database`), relaying into `bus`."""
    assert worker.database, f"{type(worker).__name__} has no database"
    database = await WorkerDatabase.open(
        worker.database,
        bus,  # type: ignore[arg-type]
        app_id=bus.service,
        retention=60.0,
        stats=RelayStats(),
    )
    try:
        yield database
    finally:
        await database.close()
