"""One queue consumer that can be paused and resumed (with a different prefetch).

Pausing cancels the AMQP consumer: messages stay buffered in the queue and burn no attempts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from framework.topology import QueueSpec

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Consumer:
    """Owns the consuming channel's subscription to one queue."""

    def __init__(self, channel: AbstractChannel, spec: QueueSpec, on_message: OnMessage) -> None:
        self._channel = channel
        self._spec = spec
        self._on_message = on_message
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self.prefetch = 0

    @property
    def consuming(self) -> bool:
        return self._tag is not None

    async def start(self, prefetch: int) -> None:
        """Subscribe with QoS = prefetch (no-op if already consuming with that prefetch)."""
        if self._tag is not None and prefetch == self.prefetch:
            return
        await self.pause()
        await self._channel.set_qos(prefetch_count=prefetch)
        if self._queue is None:
            self._queue = await self._channel.declare_queue(
                self._spec.name, durable=True, arguments=dict(self._spec.arguments)
            )
        self._tag = await self._queue.consume(self._on_message)
        self.prefetch = prefetch

    async def pause(self) -> None:
        """Stop receiving deliveries; those in flight continue and can still be acked."""
        if self._queue is None or self._tag is None:
            return
        tag, self._tag = self._tag, None
        await self._queue.cancel(tag)

    def describe(self) -> dict[str, Any]:
        return {"consuming": self.consuming, "prefetch": self.prefetch}
