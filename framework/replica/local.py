"""Local replicas: keep an event-fed copy of another service's data instead of asking it.

A service that needs, say, customers' emails subscribes to `CustomerUpdated` and applies
each event to a `Replica`; at run time it reads the replica and never calls the owner. The
replica ignores duplicates and older versions, records when it was last updated, exposes
its staleness, and can periodically ask the owner to re-publish a snapshot.

    customers = Replica("customers", CustomerUpdated, key=lambda c: c.customer_id,
                        version=lambda c: c.version, path="customers.db")
    customers.apply(event, event_key=ctx.message_id)       # in the handler of the feed
    async with customers.refreshing(bus, lambda: RefreshCustomers(requested_by="me"),
                                    every=60.0):
        ...                                                 # run the worker

A service that runs several instances feeds each one from a queue of its own, so every
instance gets every event (`feeding`, framework.replica.feed) instead of the worker's shared
queue, where competing consumers would split them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from framework.messages import Command
from framework.replica.feed import DEFAULT_EXPIRES, Feeding, feed_worker
from framework.replica.refresh import Refresher, Sender
from framework.replica.store import (
    ApplyResult,
    MemoryReplicaStore,
    ReplicaStore,
    Row,
    SqliteReplicaStore,
    decide_apply,
)

if TYPE_CHECKING:
    from framework.wire.transport import Transport

M = TypeVar("M", bound=BaseModel)
Clock = Callable[[], float]


class Replica(Generic[M]):
    """A local copy of entities of type `model`, keyed by `key(item)`, ordered by `version`.

    `path` keeps it in SQLite (survives restarts); without it, in memory. Use it as a
    context manager (or call `close()`) to release the file.
    """

    def __init__(
        self,
        name: str,
        model: type[M],
        *,
        key: Callable[[M], str],
        version: Callable[[M], int],
        path: str | Path | None = None,
        store: ReplicaStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        self.model = model
        self._key = key
        self._version = version
        self._clock = clock
        if store is not None and path is not None:
            raise ValueError("pass either path or store, not both")
        self._store: ReplicaStore = (
            store
            if store is not None
            else SqliteReplicaStore(path, table=_table_name(name))
            if path is not None
            else MemoryReplicaStore()
        )
        self.counts: dict[ApplyResult, int] = dict.fromkeys(ApplyResult, 0)

    def __repr__(self) -> str:
        return f"Replica({self.name!r}, entities={len(self)})"

    def __enter__(self) -> Replica[M]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the backing store (the SQLite file)."""
        self._store.close()

    def apply(self, item: M, *, event_key: str) -> ApplyResult:
        """Apply one event carrying an entity's current state; idempotent on `event_key`."""
        entity_id = self._key(item)
        version = self._version(item)
        result = decide_apply(self._store.get(entity_id), version, event_key)
        now = self._clock()
        if result is ApplyResult.APPLIED:
            row = Row(entity_id, version, event_key, item.model_dump_json())
            self._store.put(row, now)
        elif result is ApplyResult.CURRENT:
            self._store.touch(now)  # the owner confirmed this version is still current
        self.counts[result] += 1
        return result

    def get(self, entity_id: str) -> M | None:
        """The replicated entity, or None if no event for it has arrived yet."""
        row = self._store.get(entity_id)
        return None if row is None else self.model.model_validate_json(row.data)

    def version(self, entity_id: str) -> int | None:
        """The version held for `entity_id` (None if unknown)."""
        row = self._store.get(entity_id)
        return None if row is None else row.version

    def items(self) -> Iterator[M]:
        """Every replicated entity (in no particular order)."""
        return (self.model.model_validate_json(row.data) for row in self._store.rows())

    def __len__(self) -> int:
        return self._store.count()

    @property
    def last_updated(self) -> float | None:
        """Epoch seconds of the last event that changed or confirmed the data (None: never)."""
        return self._store.last_updated()

    def staleness(self) -> float:
        """Seconds since the last update (`inf` if never updated).

        This is the replica's staleness metric: export it as a gauge, e.g. with
        prometheus-client `Gauge(...).set_function(replica.staleness)`.
        """
        updated = self.last_updated
        return math.inf if updated is None else max(self._clock() - updated, 0.0)

    def refreshing(
        self,
        bus: Sender,
        request: Callable[[], Command],
        *,
        every: float,
        max_age: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Refresher:
        """An `async with` block during which a task asks the owner for a snapshot.

        Every `every` seconds, if the replica is older than `max_age` (default `every`),
        send `request()`; the first check runs at once, so an empty replica asks right away.
        The task is owned by the block: cancelled and awaited when it exits. `sleep` is
        the pause between checks (injectable, so tests step through rounds without waiting).
        """
        return Refresher(
            self.name,
            self.staleness,
            bus,
            request,
            every,
            every if max_age is None else max_age,
            sleep=sleep,
        )

    def feeding(
        self,
        bus: Transport,
        queue: str,
        *,
        instance: str | None = None,
        expires: float = DEFAULT_EXPIRES,
    ) -> Feeding:
        """An `async with` block during which this process consumes the replica's events
        from a queue of its own, `{queue}.{instance}`, and applies them: every instance of
        a scaled-out service gets every event. Enter it before asking for a snapshot.

        `instance` defaults to host name and process id (`replica_feed.instance_name`);
        the broker deletes the queue `expires` seconds after its process is gone.
        """
        return Feeding(bus, feed_worker(self, queue, instance=instance, expires=expires))


def _table_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name)
    return f"replica_{cleaned}"
