"""One queue consumer that can be paused and resumed (with a different prefetch).

Pausing cancels the AMQP consumer: messages stay buffered in the queue and burn no attempts.

On RabbitMQ the subscription is made on the aiormq channel under aio-pika's robust channel
and deliveries arrive as light `Delivery` objects (the consume hot path). aio-pika does not
restore such a subscription, so the consumer restores it itself: a reopened channel (after
a reconnect or a channel error) or a cancel from the broker (queue deleted) sets
`resubscribe_needed`, and the worker's watchdog calls `restart`. This is the RabbitMQ
`Subscription` of the broker port (`framework.wire.port`); the in-memory broker has its
own (`framework.testing.memory_port`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage

from framework.wire.delivery import Delivery, Incoming
from framework.wire.topology import QueueSpec

OnMessage = Callable[[Incoming], Awaitable[None]]


class Consumer:
    """Owns the consuming channel's subscription to one queue."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        spec: QueueSpec,
        on_message: OnMessage,
        arguments: dict[str, Any] | None = None,  # basic.consume's, e.g. x-priority
    ) -> None:
        self._channel = channel
        self._arguments = arguments
        self._spec = spec
        self._on_message = on_message
        self._raw: Any = None  # the aiormq channel holding our subscription
        self._tag: str | None = None
        self._watched: object | None = None
        self.prefetch = 0
        self._wanted = False  # between start() and pause(): a lost subscription is restored
        self.resubscribe_needed = asyncio.Event()
        channel.reopen_callbacks.add(self._on_reopen)

    @property
    def consuming(self) -> bool:
        return self._tag is not None

    async def start(self, prefetch: int) -> None:
        """Subscribe with QoS = prefetch (no-op if already consuming with that prefetch)."""
        if self._tag is not None and prefetch == self.prefetch:
            return
        await self.pause()
        self._wanted = True
        self.prefetch = prefetch
        await self._channel.set_qos(prefetch_count=prefetch)
        # the bus declared the queue (with the arguments it accepted, which for a queue
        # of an older framework differ from the spec's): subscribe by name only
        raw = await self._channel.get_underlay_channel()
        ok = await raw.basic_consume(
            self._spec.name, self._on_delivered, no_ack=False, arguments=self._arguments
        )
        self._raw, self._tag = raw, ok.consumer_tag
        self._watch_cancellation(raw)

    async def restart(self) -> None:
        """Subscribe again: the broker cancelled us (queue deleted and re-declared) or the
        channel was reopened (our subscription died with the old one). No-op while paused.
        If it fails (the connection dropped again), `resubscribe_needed` is set again."""
        self.resubscribe_needed.clear()
        if not self._wanted:
            return
        self._raw = None
        self._tag = None
        try:
            await self.start(self.prefetch)
        except BaseException:
            self.resubscribe_needed.set()
            raise

    async def _on_delivered(self, message: DeliveredMessage) -> None:
        await self._on_message(Delivery(message))

    def _on_reopen(self, *_: Any) -> None:
        if self._wanted:  # not paused: whatever subscription there was died with the channel
            self.resubscribe_needed.set()

    def _watch_cancellation(self, raw: Any) -> None:
        if raw is not self._watched:
            raw.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            self._watched = raw

    def _on_broker_cancel(self, frame: Any) -> None:
        if self._tag is not None and getattr(frame, "consumer_tag", None) == self._tag:
            self.resubscribe_needed.set()

    async def pause(self) -> None:
        """Stop receiving deliveries; those in flight continue and can still be acked."""
        self._wanted = False
        if self._tag is None:
            return
        tag, self._tag = self._tag, None
        if self._raw is not None:
            raw, self._raw = self._raw, None
            if not raw.is_closed:
                await raw.basic_cancel(tag)

    async def close(self) -> None:
        """Close the consuming channel: unacked deliveries go back to the queue."""
        if not self._channel.is_closed:
            await self._channel.close()
