"""What the inbox, the outbox and the relay need of a database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from framework.errors import FrameworkError, PermanentError, StoreUnavailable
from framework.outbox.rows import ClaimedRow, NewRow


class DatabaseUnavailable(StoreUnavailable):
    """The service's database did not answer (down, restarting, locked past the timeout).

    Raised inside a handler, the delivery is deferred without burning an attempt.
    """


class AlreadyHandled(FrameworkError):
    """The inbox already holds this delivery's key: its transaction committed before."""


class OutboxMisuse(PermanentError):
    """A publish that would bypass the outbox (the message says how to fix the handler)."""


class TransactionDriver(Protocol):
    """One open database transaction, as the unit of work uses it."""

    @property
    def connection(self) -> Any: ...

    async def execute(self, sql: str, *params: Any) -> int: ...

    async def fetch(self, sql: str, *params: Any) -> list[Any]: ...

    async def insert_inbox(self, queue: str, key: str, now: float, expires_at: float) -> bool:
        """Record `key` as handled on `queue`; False if it already was."""
        ...

    def stage_outbox(
        self, rows: Sequence[NewRow], owner: str | None, now: float, claimed_until: float | None
    ) -> None:
        """Insert rows (claimed by `owner` until `claimed_until` if given) with the commit."""
        ...

    @property
    def staged_ids(self) -> list[int]:
        """The ids of the staged rows, in order, once the transaction has committed."""
        ...


class Database(Protocol):
    """The service's own database: transactions, the inbox lookup and the relay's queries."""

    @property
    def masked_url(self) -> str: ...

    def begin(self) -> AbstractAsyncContextManager[TransactionDriver]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        ...

    async def seen(self, queue: str, key: str) -> bool:
        """True if the inbox holds `key` for `queue` (its transaction committed)."""
        ...

    async def claim(self, owner: str, limit: int, now: float, lease: float) -> list[ClaimedRow]:
        """Claim up to `limit` unsent rows nobody holds, oldest first, for `lease` seconds.

        A row is skipped while an earlier unsent row of its stream is held by someone else,
        so each stream is published in order.
        """
        ...

    async def mark_sent(self, owner: str, ids: Sequence[int], now: float) -> None: ...

    async def release(self, owner: str, ids: Sequence[int], retry_at: float, error: str) -> None:
        """Give rows back after a failed publish: tried again from `retry_at`."""
        ...

    async def purge(self, now: float, sent_before: float, batch: int) -> int:
        """Delete up to `batch` expired inbox rows and rows sent before `sent_before`."""
        ...

    async def backlog(self) -> int:
        """Rows not yet sent."""
        ...

    async def close(self) -> None: ...
