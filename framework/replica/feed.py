"""A replica on every instance of a scaled-out service: each process is fed from a queue of
its own, so every instance gets every event (instead of competing for them).

A replica's events must reach every process that reads it. On the worker's shared queue,
competing consumers split them: with two processes each replica would miss about half. The
feed declares `{queue}.{instance}` bound to the replica's event type, consumed by this
process alone; the broker deletes it (with its DLQ and delay queues, and its moves exchange)
`expires` seconds after its process is gone. A new instance starts empty and fills from the
owner's snapshot (`Replica.refreshing`), asked for once the feed is subscribed.

    async with customers.feeding(bus, "notifications.customers"):
        async with customers.refreshing(bus, RefreshCustomers, every=60):
            ...                                               # run the service's worker
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from types import TracebackType
from typing import Any, Protocol

from pydantic import BaseModel

from framework.context import Context
from framework.errors import ConfigurationError
from framework.wire.transport import Transport
from framework.worker import Worker


class FedReplica(Protocol):
    """What a feed needs of a replica (`framework.replica.local.Replica` is one)."""

    name: str

    @property
    def model(self) -> type[BaseModel]: ...

    def apply(self, item: Any, *, event_key: str) -> object: ...


# How long a dead instance's queues stay (their events are useless to anyone else).
DEFAULT_EXPIRES = 900.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def instance_name() -> str:
    """This process's name among the service's instances: host name and process id.

    Stable across reconnects (the queue and what it buffered are kept); a container that
    restarts in the same pod gets its queue back; a new pod gets a new one.
    """
    return _UNSAFE.sub("-", f"{socket.gethostname()}-{os.getpid()}").strip("-")


def instance_queue(queue: str, instance: str) -> str:
    """The queue of one instance: `{queue}.{instance}` (`instance` as a single name part)."""
    cleaned = _UNSAFE.sub("-", instance).strip("-")
    if not cleaned:
        raise ConfigurationError(f"instance name {instance!r} has no letter or digit")
    return f"{queue}.{cleaned}"


def feed_worker(
    replica: FedReplica,
    queue: str,
    *,
    instance: str | None = None,
    expires: float = DEFAULT_EXPIRES,
) -> type[Worker]:
    """A Worker class on `{queue}.{instance}` that applies each event to `replica`.

    Its queue expires `expires` seconds after the instance is gone; its idempotency keys
    are kept as long (the replica itself ignores duplicates and older versions).
    """
    feed_queue = instance_queue(queue, instance or instance_name())
    feed_expires = expires

    class ReplicaFeed(Worker):
        queue = feed_queue
        queue_expires = feed_expires
        idempotency_retention = feed_expires
        prefetch = 64
        max_attempts = 5
        retry_base_delay = 1.0  # three delay queues per instance, not the default's nine
        retry_max_delay = 4.0
        shutdown_grace = 5.0  # applying is local and quick

        async def handle(self, msg: Any, ctx: Context) -> None:
            replica.apply(msg, event_key=ctx.message_id)

    # the message type is the replica's: the worker's bindings come from this annotation
    ReplicaFeed.handle.__annotations__ = {"msg": replica.model, "ctx": Context, "return": None}
    ReplicaFeed.__name__ = ReplicaFeed.__qualname__ = f"{_camel(replica.name)}Feed"
    return ReplicaFeed


class Feeding:
    """`async with` owns the feed worker: subscribed on enter, stopped and awaited on exit."""

    def __init__(self, bus: Transport, worker_cls: type[Worker]) -> None:
        interval = bus.settings.topology_check_interval
        expires = worker_cls.queue_expires or DEFAULT_EXPIRES
        if not 0 < interval <= expires / 3:
            raise ConfigurationError(
                f"a replica feed's queues expire after {expires:g}s unused and only the bus's "
                "topology check keeps its delay queues alive: set "
                f"FRAMEWORK_TOPOLOGY_CHECK_INTERVAL above 0 and at most {expires / 3:g}s "
                f"(it is {interval:g})"
            )
        self.worker = worker_cls(bus)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feeding:
        self._task = asyncio.create_task(self.worker.run(), name=f"feed:{self.worker.spec.queue}")
        try:
            await self.worker.wait_ready()
        except BaseException:
            await self._end()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end()

    async def _end(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await self.worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def queue(self) -> str:
        """The instance's own queue."""
        return self.worker.spec.queue


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in _UNSAFE.split(name) if part) or "Replica"
