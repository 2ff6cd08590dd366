"""One queue consumer that can be paused and resumed (with a different prefetch).

Pausing cancels the AMQP consumer: messages stay buffered in the queue and burn no attempts.
"""

from __future__ import annotations

import asyncio
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
        self._watched: object | None = None
        self.prefetch = 0
        self.cancelled_by_broker = asyncio.Event()

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
        await self.watch_cancellation()

    async def restart(self) -> None:
        """Re-subscribe after the broker cancelled us (the queue was deleted and re-declared)."""
        self.cancelled_by_broker.clear()
        self._queue = None
        prefetch, self._tag = self.prefetch, None
        await self.start(prefetch)

    async def watch_cancellation(self) -> None:
        """Be told when the broker cancels this consumer; call again after a reconnect."""
        get_underlay = getattr(self._channel, "get_underlay_channel", None)
        if get_underlay is None:  # in-memory channels are never cancelled by a broker
            return
        underlay = await get_underlay()
        if underlay is not self._watched:
            underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            self._watched = underlay

    def _on_broker_cancel(self, frame: Any) -> None:
        if self._tag is not None and getattr(frame, "consumer_tag", None) == self._tag:
            self.cancelled_by_broker.set()

    async def pause(self) -> None:
        """Stop receiving deliveries; those in flight continue and can still be acked."""
        if self._queue is None or self._tag is None:
            return
        tag, self._tag = self._tag, None
        await self._queue.cancel(tag)
