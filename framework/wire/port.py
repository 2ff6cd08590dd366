"""The one seam between the bus and a broker, in the framework's own terms.

`Bus` is written once on top of a `BrokerPort`; below it sit two implementations:
`framework.wire.rabbitmq.RabbitPort` (aio-pika/aiormq: connections, reconnect, confirmed
publishes, consumers, coalesced acks) and `framework.testing.memory_port.MemoryPort` (the
in-process broker). Nothing here names an aio-pika type: above the port, code speaks
envelopes, routes, topologies and deliveries, so the Worker's consume, settle and ack code
is the same on both.

Settling goes through an opaque handle on each delivery (`Incoming.channel`, a
`SettleChannel`), used only by the port's own `Acker` and by the delivery's `ack`/`nack`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from framework.consume.worker_spec import WorkerSpec
    from framework.wire.delivery import Incoming
    from framework.wire.envelope import Envelope
    from framework.wire.topology import QueueSpec, Topology

M = TypeVar("M", bound=BaseModel)

OnDelivery = Callable[["Incoming"], Coroutine[Any, Any, None]]


class SettleChannel(Protocol):
    """The handle a delivery is settled on: its tag is acked or nacked there."""

    @property
    def is_closed(self) -> bool: ...

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[None]: ...


class Acker(Protocol):
    """Acks handled deliveries (perhaps coalesced) and forgets returned ones."""

    def delivered(self, incoming: Incoming) -> None:
        """Record a delivery as in flight (as soon as it arrives)."""

    async def ack(self, incoming: Incoming) -> None:
        """The delivery was handled and its moves confirmed: ack it."""

    def abandoned(self, incoming: Incoming) -> None:
        """The delivery is being returned to the queue (nack): it is no longer in flight."""

    async def close(self) -> None:
        """Send every ack still pending; stop background work."""


class Subscription(Protocol):
    """A consumer of one queue on a channel of its own, which can pause and resume.

    A subscription lost to the broker (channel reopened, consumer cancelled) sets
    `resubscribe_needed`; the owner then calls `restart`."""

    resubscribe_needed: asyncio.Event
    prefetch: int

    @property
    def consuming(self) -> bool: ...

    async def start(self, prefetch: int) -> None:
        """Subscribe with QoS = prefetch (resume after a pause)."""

    async def pause(self) -> None:
        """Stop receiving; deliveries in flight can still be settled."""

    async def restart(self) -> None:
        """Subscribe again after the subscription was lost (no-op while paused)."""

    async def close(self) -> None:
        """Close the channel: unsettled deliveries go back to the queue."""


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The counts a passive declare of a queue answers."""

    message_count: int  # ready for a consumer (not unacked, not delayed)
    consumer_count: int


class Closer(Protocol):
    """Something this bus started and must stop (a `follow`)."""

    async def close(self) -> None: ...


class EnvelopePublisher(Protocol):
    """Publishes one envelope and returns once the broker confirmed it (or raises)."""

    async def publish(
        self,
        envelope: Envelope,
        exchange: str,
        routing_key: str,
        *,
        expiration_ms: int | None = None,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Raises `Unroutable`, `Overloaded`, `PublishTimeout` or `MessageRefused`."""


class BrokerPort(EnvelopePublisher, Protocol):
    """What the bus needs of a broker."""

    async def open(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Connect; `on_reconnect` runs after every reconnect (re-declare topology)."""

    async def close(self) -> None:
        """Close publishers, consumers' channels and connections."""

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings (idempotent)."""

    async def check_worker(self, spec: WorkerSpec, worker_name: str, log: Any) -> None:
        """Start-up checks of a worker against what this broker can hold (raise to refuse)."""

    async def publish(
        self,
        envelope: Envelope,
        exchange: str,
        routing_key: str,
        *,
        expiration_ms: int | None = None,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Publish and return once confirmed; raises `Unroutable`, `Overloaded`,
        `PublishTimeout` or `MessageRefused`."""

    async def request(
        self,
        envelope: Envelope,
        routing_key: str,
        *,
        expiration_ms: int | None,
        timeout: float,
        reply_type: type[M] | None,
        on_sent: Callable[[], None] | None = None,
    ) -> Any:
        """Publish `envelope` as a request (its `reply_to` set here) and wait for the
        reply's value; `on_sent` runs once the request is confirmed."""

    async def subscribe(
        self,
        queue: QueueSpec,
        prefetch: int,
        on_delivery: OnDelivery,
        *,
        arguments: dict[str, Any] | None = None,
    ) -> Subscription:
        """A subscription to `queue` (declared already), not started yet; `arguments` are
        the consumer's (e.g. `x-priority`)."""

    def acker(self, *, max_batch: int, max_delay: float, prefetch: int) -> Acker:
        """The acker of one worker's deliveries."""

    async def consumer_count(self, queue: str) -> int | None:
        """How many consumers `queue` has (None: not known)."""

    async def ready_count(self, queue: str) -> int:
        """How many messages `queue` holds ready for a consumer (not unacked, not delayed)."""

    async def follow(self, exchange: str, queue: str, on_body: Callable[[bytes], None]) -> Closer:
        """Bind a queue of this bus only (`queue`: exclusive, gone with the connection) to
        every message of `exchange` and hand each body to `on_body`, unacknowledged: for
        disposable messages such as load reports. Restored after a reconnect."""
