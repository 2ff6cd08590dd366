"""A worker's database: opened when it starts, its relay running until it stops."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from framework.outbox.database import Database
from framework.outbox.factory import open_database
from framework.outbox.relay import Relay, RelayStats
from framework.outbox.unit_of_work import Inbox, Transaction, unit_of_work

if TYPE_CHECKING:
    from framework.wire.transport import Transport


class WorkerDatabase:
    """The inbox lookup and the transactions a worker's handlers use, plus its relay."""

    def __init__(self, database: Database, relay: Relay, *, app_id: str, retention: float) -> None:
        self.database = database
        self.relay = relay
        self._app_id = app_id
        self._retention = retention

    @classmethod
    async def open(
        cls, url: str, bus: Transport, *, app_id: str, retention: float, stats: RelayStats
    ) -> WorkerDatabase:
        """Open `url` and start its relay (raises `DatabaseUnavailable` if unreachable)."""
        database = await open_database(url, pool_size=bus.settings.database_pool_size)
        relay = Relay(bus, database, stats=stats)
        relay.start()
        return cls(database, relay, app_id=app_id, retention=retention)

    async def seen(self, queue: str, key: str) -> bool:
        """True if a transaction for this delivery committed before."""
        return await self.database.seen(queue, key)

    def transaction(self, queue: str, key: str) -> AbstractAsyncContextManager[Transaction]:
        """The unit of work of one delivery: its inbox row first, its stream its key."""
        return unit_of_work(
            self.database,
            self.relay,
            app_id=self._app_id,
            inbox=Inbox(queue, key, self._retention),
            stream=f"{queue}/{key}",
        )

    async def close(self) -> None:
        """Stop the relay (recording what was published), then close the database."""
        try:
            await self.relay.close()
        finally:
            await self.database.close()
