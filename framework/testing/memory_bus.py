"""`MemoryBus`: the Bus API and semantics in process, for unit tests of services.

It is the `Bus` itself over the in-memory broker port (`framework.testing.memory_port`):
sending, publishing, requests, the Worker's consume, settle and coalesced-ack code are the
production code; only the broker below the port is replaced (`MemoryBroker`).

    async with MemoryBus() as bus:
        await bus.start_worker(OrderWorker)
        await bus.send(PlaceOrder(...), idempotency_key="order-1")
        await bus.drain()                       # until nothing is left to do
        assert bus.published_of(OrderPlaced)    # what handlers published
        assert bus.dead_letters("orders") == []

Retry delays run on a virtual clock (`bus.now`): `drain()` jumps it forward when nothing
else can happen, so a retry after 300 s takes no real time and retries keep their order.
Deadlines and handler timeouts still use the real clock.

`request()` works like `Bus.request`: the reply travels back through the broker to this bus's
reply queue. It needs no `drain()` (deliveries run whenever the event loop does); its timeout
is real time, and it jumps the virtual clock itself only within that budget
(`MemoryPort.request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from framework.bus import Bus
from framework.idempotency import IdempotencyStore, MemoryStore
from framework.messages import Message
from framework.settings import Settings
from framework.testing.memory_broker import MemoryBroker, StoredMessage
from framework.testing.memory_port import MemoryPort
from framework.wire import names
from framework.wire.envelope import Envelope
from framework.worker import Worker

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

W = TypeVar("W", bound=Worker)
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Published:
    """A message the bus accepted (from a test or from a handler's `ctx.publish`/`ctx.send`)."""

    message: Message
    key: str
    correlation_id: str
    causation_id: str | None
    deadline_ms: int | None
    routed_to: tuple[str, ...]


class MemoryBus(Bus):
    """The `Bus` over an in-memory broker. Several may share one `MemoryBroker`."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        service: str | None = None,
        idempotency: IdempotencyStore | None = None,
        broker: MemoryBroker | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.broker = broker or MemoryBroker()
        self._owns_broker = broker is None
        self._memory = MemoryPort(self.broker)
        self._rabbit = None
        self._setup(
            settings or Settings(),
            service,
            idempotency or MemoryStore(),
            tracer_provider,
            self._memory,
        )
        self._owns_store = idempotency is None
        self.published: list[Published] = []
        self._on_published = self._record
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def __repr__(self) -> str:
        return f"MemoryBus(service={self.service!r})"

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the workers started with `start_worker`, then release what this bus owns."""
        for worker, task in reversed(self._workers):
            await worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        store = self._store
        await super().close()
        if self._owns_broker:
            await self.broker.close()
        if self._owns_store and store is not None:
            await store.close()

    def _record(self, message: Message, envelope: Envelope) -> None:
        self.published.append(
            Published(
                message,
                envelope.message_id,
                envelope.correlation_id,
                envelope.causation_id,
                envelope.deadline_ms,
                self._memory.last_routed,
            )
        )

    # ---- test helpers -------------------------------------------------------------------

    async def start_worker(self, worker_cls: type[W]) -> W:
        """Run `worker_cls` on this bus until `close()`; returns once it consumes."""
        worker = worker_cls(self)
        task = asyncio.create_task(worker.run(), name=f"worker:{worker_cls.__name__}")
        self._workers.append((worker, task))
        await worker.wait_ready()
        return worker

    async def drain(self, timeout: float = 10.0) -> None:
        """Run until no work is pending: deliveries settled, due retries delivered.

        Retries waiting in delay queues are released by jumping the virtual clock. Raises
        `TimeoutError` naming what is still busy if that takes longer than `timeout` seconds
        of real time (a handler that never returns, or a message retried forever).
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.broker.wait_idle()
                    if not self.broker.advance():
                        return
        except TimeoutError:
            busy = "; ".join(self.broker.busy()) or "retries still scheduled"
            raise TimeoutError(f"bus not drained after {timeout:g}s: {busy}") from None

    @property
    def now(self) -> float:
        """Seconds on the virtual clock that delays run on (starts at 0)."""
        return self.broker.now

    def dead_letters(self, queue: str) -> list[StoredMessage]:
        """Messages in `queue`'s DLQ (`.reason`, `.error`, `.attempts`, `.headers`, `.body`)."""
        return self.broker.messages(names.dlq_name(queue))

    def messages(self, queue: str) -> list[StoredMessage]:
        """Messages waiting in any queue (ready or delayed), without removing them."""
        return self.broker.messages(queue)

    def published_of(self, message_type: type[M]) -> list[M]:
        """The messages of `message_type` accepted by this bus, in order."""
        return [p.message for p in self.published if isinstance(p.message, message_type)]

    async def publish_raw(
        self, routing_key: str, body: bytes, *, exchange: str = "", **properties: Any
    ) -> None:
        """Inject arbitrary bytes (like `BrokerAdmin.publish_raw`), e.g. malformed bodies."""
        properties.setdefault("message_id", f"raw-{os.urandom(6).hex()}")
        self.broker.publish(StoredMessage.raw(body, properties), exchange, routing_key)
