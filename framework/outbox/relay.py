"""The relay: publishes committed outbox rows with confirms and marks them sent.

Two paths, one rule (a row is published only by whoever holds its claim):
- right after a commit, the process that committed publishes its own rows (claimed at
  insert, in commit order) through the bus, so a handler's messages leave as fast as before;
- a background loop sweeps rows nobody holds: left by a crashed process (its lease expired),
  handed back after a failed publish, or inserted by `bus.outbox(conn)` outside handlers.

Marking sent is batched and may be lost in a crash: the row is then published again after
its lease, with the same key, and downstream idempotency absorbs the duplicate. The loop
also deletes expired inbox rows and old sent rows, a small batch per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from framework.messages import Command, Event
from framework.outbox.database import Database
from framework.outbox.rows import ClaimedRow, by_stream, expiration_ms, retry_delay
from framework.outbox.unit_of_work import Pending, Transaction, unit_of_work
from framework.resilience import retrying

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from framework.settings import Settings
    from framework.wire.transport import Transport

_log = structlog.get_logger("framework.outbox")
# After a publish, wait this long before marking, so one UPDATE marks many rows.
MARK_COALESCE = 0.01


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """How a relay claims, retries and cleans up (defaults from `Settings`)."""

    lease: float = 15.0  # a claimed row is left alone this long (must outlast a publish)
    poll_interval: float = 1.0  # sweep at least this often (commits in-process wake it)
    batch: int = 100
    retention: float = 86400.0  # sent rows are deleted this long after sending
    cleanup_interval: float = 60.0
    cleanup_batch: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayPolicy:
        return cls(
            lease=settings.outbox_lease,
            poll_interval=settings.outbox_poll_interval,
            retention=settings.outbox_retention,
            cleanup_interval=settings.outbox_cleanup_interval,
        )


@dataclass
class RelayStats:
    """What a relay did; `latency_observers` get commit-to-confirm seconds per message."""

    published: int = 0
    failed: int = 0
    backlog: int = 0
    latency_observers: list[Callable[[float], None]] = field(default_factory=list)

    def observe(self, seconds: float) -> None:
        self.published += 1
        for observer in self.latency_observers:
            observer(seconds)


class Relay:
    """Publishes a database's outbox. `async with Relay(bus, database):` runs it.

    Several relays (processes) may run on one database: a row is claimed before it is
    published, so no two relays publish it at the same time.
    """

    def __init__(
        self,
        bus: Transport,
        database: Database,
        policy: RelayPolicy | None = None,
        *,
        stats: RelayStats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.database = database
        self.policy = policy or RelayPolicy.from_settings(bus.settings)
        self.owner = uuid.uuid4().hex
        self.stats = stats or RelayStats()
        self._clock = clock
        self._wake = asyncio.Event()
        self._sent: list[int] = []
        self._sweep_requested = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Relay:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def lease(self) -> float:
        """How long rows committed by a unit of work stay claimed by this relay."""
        return self.policy.lease

    def start(self) -> None:
        """Start the background loop (owned by this relay; `close()` awaits it)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="fw-outbox-relay")

    async def close(self) -> None:
        """Stop the loop and record what this process already published as sent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            async with asyncio.timeout(5.0):
                await self._flush_sent()
        except Exception as exc:  # noqa: BLE001 - unmarked: republished later, same key
            _log.warning("outbox.mark_sent_failed", error=repr(exc))

    def notify(self) -> None:
        """Sweep now (rows were committed that this process does not publish itself)."""
        self._sweep_requested = True
        self._wake.set()

    def transaction(self, *, stream: str | None = None) -> AbstractAsyncContextManager[Transaction]:
        """A transaction outside handlers; what it publishes goes out right after commit.

        Messages of one transaction are published in order; pass the same `stream` to
        several transactions to keep their messages in order too.
        """
        return unit_of_work(self.database, self, app_id=self.bus.service, stream=stream)

    # ---- right after a commit -------------------------------------------------------

    async def deliver(self, pending: list[Pending]) -> None:
        """Publish rows this process just committed (and claimed), in order.

        A failed publish is not the committer's problem: that row and the ones after it
        are handed back to the sweep, which retries them with backoff.
        """
        for index, item in enumerate(pending):
            try:
                await self._publish_pending(item)
            except Exception as exc:  # noqa: BLE001 - counted, handed back with backoff
                self.stats.failed += 1
                error = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "outbox.publish_deferred",
                    message_id=item.key,
                    error=error,
                    hint="the relay retries it from the outbox",
                )
                await self._hand_back([p.row_id for p in pending[index:]], error)
                return
            self._sent.append(item.row_id)
            self.stats.observe(self._clock() - item.committed_at)
        self._wake.set()  # cancelled in between: the rest stays claimed until its lease ends

    async def _publish_pending(self, item: Pending) -> None:
        deadline = (
            None
            if item.deadline_ms is None
            else datetime.fromtimestamp(item.deadline_ms / 1000, UTC)
        )
        message = item.message
        if isinstance(message, Command):
            await self.bus.send(
                message,
                idempotency_key=item.key,
                correlation_id=item.correlation_id,
                causation_id=item.causation_id,
                deadline=deadline,
                traceparent=item.traceparent,
            )
        elif isinstance(message, Event):
            await self.bus.publish(
                message,
                idempotency_key=item.key,
                correlation_id=item.correlation_id,
                causation_id=item.causation_id,
                deadline=deadline,
                traceparent=item.traceparent,
            )

    async def _hand_back(self, ids: list[int], error: str) -> None:
        try:
            await self.database.release(self.owner, ids, self._clock() + retry_delay(1), error)
        except Exception as exc:  # noqa: BLE001 - the claims then simply expire after their lease
            _log.warning("outbox.release_failed", error=repr(exc))
        self.notify()

    # ---- the background loop ------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: mark what was published, sweep and clean up every
        `poll_interval` (or when notified), and report the backlog."""
        next_sweep = 0.0
        next_cleanup = self._clock() + self.policy.cleanup_interval / 10
        failures = 0
        while True:
            swept = 0
            try:
                await self._flush_sent()
                if self._sweep_requested or self._clock() >= next_sweep:
                    self._sweep_requested = False
                    swept = await self.sweep()
                    if self._clock() >= next_cleanup:
                        await self.cleanup()
                        next_cleanup = self._clock() + self.policy.cleanup_interval
                    self.stats.backlog = await self.database.backlog()
                    next_sweep = self._clock() + self.policy.poll_interval
                failures = 0
            except Exception as exc:  # noqa: BLE001 - database down: retried with backoff
                failures += 1
                pause = retrying.outbox_sweep(self.policy.poll_interval)
                next_sweep = self._clock() + pause.nominal(failures)
                _log.warning(
                    "outbox.relay_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    database=self.database.masked_url,
                )
            if swept >= self.policy.batch:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_sweep - self._clock(), 0.0)):
                    await self._wake.wait()
                    await asyncio.sleep(MARK_COALESCE)  # mark the commits close behind too
            self._wake.clear()

    async def _flush_sent(self) -> None:
        if self._sent:
            ids, self._sent = self._sent, []
            try:
                await self.database.mark_sent(self.owner, ids, self._clock())
            except BaseException:
                self._sent[:0] = ids
                raise

    async def sweep(self) -> int:
        """Claim and publish one batch of rows nobody holds; how many were claimed."""
        rows = await self.database.claim(
            self.owner, self.policy.batch, self._clock(), self.policy.lease
        )
        if rows:
            await asyncio.gather(*(self._publish_stream(s) for s in by_stream(rows)))
            await self._flush_sent()
        return len(rows)

    async def _publish_stream(self, rows: list[ClaimedRow]) -> None:
        for index, row in enumerate(rows):
            envelope = row.envelope
            try:
                await self.bus.port.publish(
                    envelope,
                    row.exchange,
                    row.routing_key,
                    expiration_ms=expiration_ms(envelope.deadline_ms, int(self._clock() * 1000)),
                    mandatory=row.mandatory,
                )
            except Exception as exc:  # noqa: BLE001 - counted, handed back with backoff
                self.stats.failed += 1
                error = f"{type(exc).__name__}: {exc}"
                rest = rows[index:]
                retry_at = self._clock() + retry_delay(row.attempts)
                _log.warning(
                    "outbox.publish_failed",
                    message_id=envelope.message_id,
                    attempts=row.attempts,
                    error=error,
                    retry_at=retry_at,
                )
                with contextlib.suppress(Exception):  # else its lease expires later
                    await self.database.release(self.owner, [r.id for r in rest], retry_at, error)
                return
            self._sent.append(row.id)
            self.stats.observe(self._clock() - row.created_at)

    async def cleanup(self) -> int:
        """Delete expired inbox rows and old sent rows, one small batch per transaction."""
        total = 0
        while True:
            now = self._clock()
            deleted = await self.database.purge(
                now, now - self.policy.retention, self.policy.cleanup_batch
            )
            total += deleted
            if deleted < self.policy.cleanup_batch:
                return total
            await asyncio.sleep(0)  # let transactions waiting for the lock in between
