"""The broker port on the in-memory broker: what `MemoryBus` runs the Bus on.

Everything above the port is the production code (`Bus` publishing, `Worker` consuming,
`settle.settle_or_return`, the `AckCoalescer`); only this module and `MemoryBroker` stand in
for RabbitMQ. Envelopes are stored as RabbitMQ would hold them (`StoredMessage.from_envelope`,
the same header table as `amqp_properties`).

Requests wait for their reply while driving the virtual clock like `MemoryBus.drain`, within
their own time budget (see `MemoryPort.request`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import BaseModel

from framework.consume.worker_spec import WorkerSpec
from framework.errors import Unroutable
from framework.publish.reply import (
    PendingReplies,
    decode_reply,
    request_timeout,
    unroutable_request,
)
from framework.testing.memory_broker import MemoryBroker, MemoryChannel, StoredMessage
from framework.wire import names
from framework.wire.acks import AckCoalescer
from framework.wire.envelope import Envelope
from framework.wire.port import Closer, OnDelivery
from framework.wire.topology import BindingSpec, QueueSpec, Topology

M = TypeVar("M", bound=BaseModel)


class MemorySubscription:
    """A consumer of one queue on a channel of its own (`Subscription` of the port).

    An in-process broker never drops a subscription, so `resubscribe_needed` stays clear."""

    def __init__(self, channel: MemoryChannel, queue: str, on_delivery: OnDelivery) -> None:
        self._channel = channel
        self._queue = queue
        self._on_delivery = on_delivery
        self._tag: str | None = None
        self._wanted = False
        self.prefetch = channel.prefetch
        self.resubscribe_needed = asyncio.Event()

    @property
    def consuming(self) -> bool:
        return self._tag is not None

    async def start(self, prefetch: int) -> None:
        """Consume with QoS = prefetch (no-op if already consuming with that prefetch)."""
        if self._tag is not None and prefetch == self.prefetch:
            return
        await self.pause()
        self._wanted = True
        self.prefetch = prefetch
        await self._channel.set_qos(prefetch)
        self._tag = self._channel.broker.add_consumer(self._queue, self._on_delivery, self._channel)

    async def restart(self) -> None:
        self.resubscribe_needed.clear()
        if self._wanted:
            self._tag = None
            await self.start(self.prefetch)

    async def pause(self) -> None:
        self._wanted = False
        tag, self._tag = self._tag, None
        if tag is not None:
            self._channel.broker.remove_consumer(self._queue, tag)

    async def close(self) -> None:
        await self._channel.close()


class MemoryPort:
    """`BrokerPort` on a `MemoryBroker` (several ports may share one broker)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        # the queues the last publish was routed to (`MemoryBus.published` records them)
        self.last_routed: tuple[str, ...] = ()
        self._pending = PendingReplies()
        self._reply_to: str | None = None
        self._reply_channel: MemoryChannel | None = None

    async def open(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Nothing to connect: an in-process broker never reconnects."""

    async def close(self) -> None:
        """Cancel waiting requests; remove this port's reply queue."""
        self._pending.cancel_all()
        if self._reply_channel is not None and self._reply_to is not None:
            await self._reply_channel.close()
            self.broker.delete_queue(self._reply_to)
            self._reply_to = self._reply_channel = None

    async def declare(self, topology: Topology) -> None:
        self.broker.apply(topology)

    async def check_worker(self, spec: WorkerSpec, worker_name: str, log: Any) -> None:
        """Nothing to check: the in-memory broker holds whatever the topology says."""

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
        """Route and store; 'confirmed' once stored."""
        if not envelope.message_id:
            raise ValueError("every published message needs a message_id")
        stored = StoredMessage.from_envelope(envelope, expiration_ms)
        routed = self.broker.publish(stored, exchange, routing_key, mandatory=mandatory)
        self.last_routed = tuple(routed)

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
        """Publish with `reply_to` = this port's reply queue and wait for the reply.

        While it waits, the request drives the virtual clock like `drain()`, but only as
        far as its own budget allows: real time spent plus virtual time skipped stays under
        `timeout`, so a retry delay longer than the timeout makes it time out."""
        key = envelope.message_id
        request = replace(envelope, reply_to=self._reply_queue())
        future = self._pending.expect(key)
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.publish(
                        request, names.COMMANDS_EXCHANGE, routing_key, expiration_ms=expiration_ms
                    )
                except Unroutable as exc:  # the same text as on RabbitMQ
                    raise unroutable_request(routing_key, key) from exc
                if on_sent is not None:
                    on_sent()
                body, status = await self._await_reply(future, timeout)
        except TimeoutError as exc:
            raise request_timeout(routing_key, key, timeout) from exc
        finally:
            self._pending.forget(key)
        return decode_reply(body, status, reply_type)

    async def _await_reply(
        self, future: asyncio.Future[tuple[bytes, str]], timeout: float
    ) -> tuple[bytes, str]:
        """Wait for `future`, jumping the virtual clock when nothing else can happen."""
        loop = asyncio.get_running_loop()
        broker = self.broker
        started, virtual_start = loop.time(), broker.now
        while not future.done():
            await _first(future, broker.wait_idle())
            if future.done() or broker.busy():
                continue
            due = broker.next_due()
            if due is not None and (loop.time() - started) + (due - virtual_start) < timeout:
                broker.advance()
            else:  # nothing due within the budget: wait for news (or the real timeout)
                await _first(future, broker.wait_changed())
        return future.result()

    def _reply_queue(self) -> str:
        """This port's exclusive reply queue (the stand-in for `amq.rabbitmq.reply-to`)."""
        if self._reply_to is None:
            name = f"{names.DIRECT_REPLY_TO}.memory.{os.urandom(6).hex()}"
            self.broker.ensure_queue(name, {})
            self._reply_channel = self.broker.channel(prefetch=2**31 - 1)
            self.broker.add_consumer(name, self._on_reply, self._reply_channel)
            self._reply_to = name
        return self._reply_to

    async def _on_reply(self, delivery: Any) -> None:
        await delivery.ack()  # direct reply-to is no-ack
        self._pending.deliver(delivery.headers, delivery.body)

    async def subscribe(
        self,
        queue: QueueSpec,
        prefetch: int,
        on_delivery: OnDelivery,
        *,
        arguments: dict[str, Any] | None = None,  # one process: consumer priorities moot
    ) -> MemorySubscription:
        return MemorySubscription(self.broker.channel(prefetch), queue.name, on_delivery)

    def acker(self, *, max_batch: int, max_delay: float, prefetch: int) -> AckCoalescer:
        """The same coalesced acks as on RabbitMQ, on the in-memory channels."""
        return AckCoalescer(max_batch=max_batch, max_delay=max_delay, prefetch=prefetch)

    async def consumer_count(self, queue: str) -> int | None:
        """Not counted: in one process the in-memory store is shared by construction."""
        return None

    async def ready_count(self, queue: str) -> int:
        return self.broker.counts(queue).message_count

    async def follow(self, exchange: str, queue: str, on_body: Callable[[bytes], None]) -> Closer:
        """A queue of this bus bound to all of `exchange`, each message taken at once."""
        self.broker.ensure_queue(queue, {})
        self.broker.apply(Topology(bindings=(BindingSpec(queue, exchange, "#"),)))
        channel = self.broker.channel(prefetch=2**31 - 1)

        async def deliver(delivery: Any) -> None:
            await delivery.ack()  # disposable: taken at once, as without acks
            on_body(delivery.body)

        self.broker.add_consumer(queue, deliver, channel)
        return _Following(self.broker, queue, channel)


class _Following:
    """Stops a `follow`: its channel closed, its queue deleted (as an exclusive queue goes)."""

    def __init__(self, broker: MemoryBroker, queue: str, channel: MemoryChannel) -> None:
        self._broker = broker
        self._queue = queue
        self._channel: MemoryChannel | None = channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._broker.delete_queue(self._queue)
            self._channel = None


async def _first(future: asyncio.Future[Any], other: Awaitable[None]) -> None:
    """Wait until `future` or `other` is done; `other` is cancelled if still running."""
    task = asyncio.ensure_future(other)
    try:
        await asyncio.wait({future, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
