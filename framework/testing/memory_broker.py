"""An in-process stand-in for the part of RabbitMQ the framework uses.

It sits below the in-memory broker port (`framework.testing.memory_port`): channels with
a prefetch and `basic_ack`/`basic_nack` (the settle handle `AckCoalescer` acks on, as on
an aiormq channel), deliveries with `ack`/`nack`; it routes stored messages (encoded from
envelopes by `StoredMessage.from_envelope`) the way the broker does: the default exchange
by queue name, `fw.commands` (direct) and `fw.events` (topic) by binding; a `mandatory`
publish with no queue raises `Unroutable`, a full `reject-publish` queue `Overloaded`.
An ordered worker's topology works too: exchange-to-exchange bindings, a headers exchange
(`x-match` all) and single-active-consumer queues; prefetch counts per consumer, as
RabbitMQ's `basic.qos` does.

Time: delay queues (those with `x-message-ttl`, i.e. `Q.retry.*`) hold messages on a
virtual clock (`now`, seconds from 0). The clock jumps to the next due message only when
nothing else can happen (`drain`), so retries keep their order and delays cost no real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from framework.errors import FrameworkError, Overloaded, Unroutable
from framework.testing.memory_schedule import HeldMessages, countdown_delay
from framework.wire import names
from framework.wire.envelope import Envelope, wire_headers
from framework.wire.port import QueueCounts
from framework.wire.topology import Topology

Callback = Callable[[Any], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class StoredMessage:
    """A message as a queue holds it (what an AMQP consumer would read)."""

    body: bytes
    message_id: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    app_id: str | None = None
    timestamp: datetime | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    expiration_ms: int | None = None
    reply_to: str | None = None
    redelivered: bool = False

    @classmethod
    def from_envelope(cls, envelope: Envelope, expiration_ms: int | None = None) -> StoredMessage:
        """What RabbitMQ would hold for an envelope published with `amqp_properties`."""
        return cls(
            body=envelope.body,
            message_id=envelope.message_id,
            type=envelope.type,
            correlation_id=envelope.correlation_id,
            app_id=envelope.app_id,
            timestamp=envelope.timestamp or datetime.now(UTC),
            headers=wire_headers(envelope),
            expiration_ms=None if expiration_ms is None else max(expiration_ms, 1),
            reply_to=envelope.reply_to,
        )

    @classmethod
    def raw(cls, body: bytes, properties: dict[str, Any]) -> StoredMessage:
        """Arbitrary bytes with AMQP property names (`type`, `message_id`, `headers`, ...)."""
        known = {
            "message_id",
            "type",
            "correlation_id",
            "app_id",
            "timestamp",
            "headers",
            "reply_to",
        }
        unknown = set(properties) - known - {"content_type", "delivery_mode"}
        if unknown:
            raise TypeError(f"publish_raw: unknown properties {sorted(unknown)}")
        values = {k: v for k, v in properties.items() if k in known}
        values["headers"] = dict(values.get("headers") or {})
        return cls(body=body, **values)

    @property
    def reason(self) -> str | None:
        """`fw-reason` of a dead-lettered message (invalid, permanent, exhausted, ...)."""
        value = self.headers.get(names.REASON)
        return None if value is None else str(value)

    @property
    def error(self) -> str | None:
        """`fw-error`: the exception type and text that sent it here."""
        value = self.headers.get(names.ERROR)
        return None if value is None else str(value)

    @property
    def attempts(self) -> int | None:
        """`fw-attempts`: how many attempts were made."""
        value = self.headers.get(names.ATTEMPTS)
        return value if isinstance(value, int) else None


@dataclass
class _Queue:
    name: str
    arguments: dict[str, Any]
    ready: deque[StoredMessage] = field(default_factory=deque)
    consumers: dict[str, _Consumer] = field(default_factory=dict)

    @property
    def delay_ms(self) -> int | None:
        ttl = self.arguments.get("x-message-ttl")
        return ttl if isinstance(ttl, int) else None


@dataclass
class _Consumer:
    tag: str
    callback: Callback
    channel: MemoryChannel


class MemoryDelivery:
    """One delivered message, with the attributes and `ack` of aio-pika's IncomingMessage."""

    def __init__(self, stored: StoredMessage, tag: int, queue: str, channel: MemoryChannel):
        self.stored = stored
        self.delivery_tag = tag
        self.queue = queue
        self.channel = channel
        self.body = stored.body
        self.message_id = stored.message_id
        self.type = stored.type
        self.correlation_id = stored.correlation_id
        self.app_id = stored.app_id
        self.timestamp = stored.timestamp
        self.headers = dict(stored.headers)
        self.redelivered = stored.redelivered
        self.reply_to = stored.reply_to

    async def ack(self, multiple: bool = False) -> None:
        await self.channel.basic_ack(self.delivery_tag, multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self.channel.basic_nack(self.delivery_tag, multiple, requeue)


class MemoryChannel:
    """A consuming channel: QoS (prefetch) and the deliveries it has not settled yet.

    Deliveries are settled by tag (`basic_ack`, `basic_nack`, with `multiple` meaning every
    tag up to it), as on an AMQP channel."""

    def __init__(self, broker: MemoryBroker, prefetch: int) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self.unacked: dict[int, MemoryDelivery] = {}
        self.is_closed = False

    async def set_qos(self, prefetch_count: int, **_: Any) -> None:
        """Like basic.qos: applies to deliveries from now on."""
        self.prefetch = prefetch_count
        self.broker.changed()

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._settle(delivery_tag, multiple, requeue=False)

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        self._settle(delivery_tag, multiple, requeue=requeue)

    def _settle(self, tag: int, multiple: bool, *, requeue: bool) -> None:
        if self.is_closed:  # like a closed AMQP channel: its deliveries went back already
            return
        tags = [t for t in self.unacked if t <= tag] if multiple else [tag]
        if tag not in self.unacked:
            raise FrameworkError(f"delivery {tag} was already settled")
        for one in tags:
            delivery = self.unacked.pop(one)
            if requeue:
                self.broker.requeue(delivery)
        self.broker.changed()

    async def close(self) -> None:
        """Like the broker: unsettled deliveries go back to their queues, marked redelivered."""
        if self.is_closed:
            return
        self.is_closed = True
        self.broker.drop_channel(self)
        for delivery in list(self.unacked.values()):
            self.unacked.pop(delivery.delivery_tag)
            self.broker.requeue(delivery)
        self.broker.changed()


class MemoryBroker:
    """Queues, bindings, delay queues on a virtual clock, and consumers with prefetch."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queues: dict[str, _Queue] = {}
        self._exchanges: dict[str, str] = {}
        self._bindings: set[tuple[str, str, str]] = set()
        self._links: set[tuple[str, str, str]] = set()  # (source, routing key, destination)
        self._matching: set[tuple[str, tuple[tuple[str, str], ...], str]] = set()  # headers
        self._delayed: list[tuple[float, int, str, StoredMessage]] = []
        self.held: HeldMessages[StoredMessage] = HeldMessages()  # scheduled sends
        self._seq = itertools.count(1)
        self._tasks: dict[asyncio.Task[Any], MemoryChannel] = {}  # consumer callbacks
        self._waiters: list[asyncio.Future[None]] = []
        self._channels: set[MemoryChannel] = set()

    # ---- topology --------------------------------------------------------------------

    def apply(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings (idempotent, like the real declare)."""
        for exchange in topology.exchanges:
            self._exchanges[exchange.name] = exchange.kind
        for queue in topology.queues:
            self.ensure_queue(queue.name, dict(queue.arguments))
        for name in topology.own_exchanges:
            self._exchanges[name] = "direct"
        for router in topology.routers:
            self._exchanges[router.name] = router.kind
        for binding in (*topology.bindings, *topology.moves):
            self._bindings.add((binding.exchange, binding.routing_key, binding.queue))
        for binding in topology.partition_bindings:
            self._matching.add((binding.exchange, binding.arguments, binding.queue))
        for link in topology.exchange_bindings:
            self._links.add((link.source, link.routing_key, link.destination))

    def ensure_queue(self, name: str, arguments: dict[str, Any]) -> None:
        self._queues.setdefault(name, _Queue(name, dict(arguments)))

    def counts(self, name: str) -> QueueCounts:
        """Ready messages (not delayed, not unacked) and consumers of queue `name`."""
        queue = self._queues.get(name)
        if queue is None:
            raise FrameworkError(f"queue {name!r} was never declared")
        return QueueCounts(len(queue.ready), len(queue.consumers))

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def delete_queue(self, name: str) -> None:
        """Remove `name` with its consumers and messages (like queue.delete)."""
        self._queues.pop(name, None)
        self._bindings = {b for b in self._bindings if b[2] != name}
        self._matching = {b for b in self._matching if b[2] != name}
        self._delayed = [d for d in self._delayed if d[2] != name]
        heapq.heapify(self._delayed)
        self.changed()

    # ---- publishing --------------------------------------------------------------------

    def publish(
        self, message: StoredMessage, exchange: str, routing_key: str, *, mandatory: bool = True
    ) -> list[str]:
        """Route and store `message`; returns the queues it went to (none while a scheduled
        command is held in the countdown)."""
        if exchange == names.SCHEDULE_EXCHANGE:
            self.held.hold(self.now + countdown_delay(message.headers), routing_key, message)
            self.changed()
            return []
        targets = self._route(message, exchange, routing_key)
        if not targets and mandatory:
            raise Unroutable.no_queue(
                message.type or "", exchange, routing_key, message.message_id or ""
            )
        for name in targets:
            self._check_capacity(self._queues[name], message, routing_key)
        for name in targets:
            self._enqueue(self._queues[name], message)
        self.changed()
        return targets

    def _route(self, message: StoredMessage, exchange: str, routing_key: str) -> list[str]:
        if exchange != "" and exchange not in self._exchanges:
            raise Unroutable.no_exchange(exchange, routing_key, message.message_id or "")
        return self._targets(exchange, routing_key, message.headers or {})

    def _targets(
        self, exchange: str, routing_key: str, headers: Any, seen: frozenset[str] = frozenset()
    ) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        kind = self._exchanges.get(exchange, "direct")
        if kind == "headers":
            found = {q for ex, args, q in self._matching if ex == exchange and _all(args, headers)}
        else:
            found = {
                queue
                for ex, key, queue in self._bindings
                if ex == exchange and _matches(kind, key, routing_key)
            }
        for source, key, destination in self._links:  # exchange-to-exchange, no loops
            if source == exchange and destination not in seen and _matches(kind, key, routing_key):
                found.update(self._targets(destination, routing_key, headers, seen | {exchange}))
        return sorted(found)

    def _check_capacity(self, queue: _Queue, message: StoredMessage, routing_key: str) -> None:
        limit = queue.arguments.get("x-max-length")
        if (
            isinstance(limit, int)
            and queue.arguments.get("x-overflow") == "reject-publish"
            and len(queue.ready) >= limit
        ):
            raise Overloaded.queue_full(
                message.type or "", message.message_id or "", routing_key, queue.name
            )

    def _enqueue(self, queue: _Queue, stored: StoredMessage) -> None:
        delay = queue.delay_ms
        if delay is None:
            queue.ready.append(stored)
            self._dispatch(queue)
            return
        if stored.expiration_ms is not None:
            delay = min(delay, stored.expiration_ms)
        heapq.heappush(
            self._delayed, (self.now + delay / 1000, next(self._seq), queue.name, stored)
        )

    def requeue(self, delivery: MemoryDelivery) -> None:
        queue = self._queues[delivery.queue]
        queue.ready.appendleft(replace(delivery.stored, redelivered=True))
        self._dispatch(queue)

    # ---- inspection ---------------------------------------------------------------------

    def messages(self, queue: str) -> list[StoredMessage]:
        """Messages waiting in `queue` (ready, or delayed on the virtual clock), not removed."""
        found = self._queues.get(queue)
        if found is None:
            raise FrameworkError(f"queue {queue!r} was never declared")
        delayed = [m for _, _, name, m in sorted(self._delayed) if name == queue]
        return [*found.ready, *delayed]

    # ---- consuming ---------------------------------------------------------------------

    def add_consumer(self, queue: str, callback: Callback, channel: MemoryChannel) -> str:
        if queue not in self._queues:
            raise FrameworkError(f"queue {queue!r} was never declared")
        tag = f"memory.ctag.{next(self._seq)}"
        self._queues[queue].consumers[tag] = _Consumer(tag, callback, channel)
        self._dispatch(self._queues[queue])
        return tag

    def remove_consumer(self, queue: str, tag: str) -> None:
        self._queues[queue].consumers.pop(tag, None)
        self.changed()

    def channel(self, prefetch: int) -> MemoryChannel:
        """A new consuming channel with QoS = `prefetch`."""
        channel = MemoryChannel(self, prefetch)
        self._channels.add(channel)
        return channel

    def drop_channel(self, channel: MemoryChannel) -> None:
        """The channel closed: its consumers go, and (as aiormq does) its consumer callbacks
        still running are cancelled."""
        self._channels.discard(channel)
        for task in [t for t, owner in self._tasks.items() if owner is channel]:
            task.cancel()
        for queue in self._queues.values():
            for tag in [t for t, c in queue.consumers.items() if c.channel is channel]:
                del queue.consumers[tag]

    def changed(self) -> None:
        """Something settled or arrived: deliver what can be delivered, wake `wait_idle`."""
        for queue in self._queues.values():
            self._dispatch(queue)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _dispatch(self, queue: _Queue) -> None:
        # single active consumer: only the first subscribed, until it goes
        single = bool(queue.arguments.get("x-single-active-consumer"))
        while queue.ready:
            candidates = list(queue.consumers.values())[:1] if single else queue.consumers.values()
            consumer = next((c for c in candidates if _has_room(c, queue.name)), None)
            if consumer is None:
                return
            stored = queue.ready.popleft()
            delivery = MemoryDelivery(stored, next(self._seq), queue.name, consumer.channel)
            consumer.channel.unacked[delivery.delivery_tag] = delivery
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
                consumer.callback(delivery)
            )
            self._tasks[task] = consumer.channel
            task.add_done_callback(self._task_done)
            if not single:  # round robin between consumers of one queue
                queue.consumers[consumer.tag] = queue.consumers.pop(consumer.tag)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        self.changed()

    # ---- time and idleness -------------------------------------------------------------

    def busy(self) -> list[str]:
        """What is still going on: unsettled deliveries and deliverable ready messages."""
        reasons = [
            f"{len(channel.unacked)} unsettled deliveries (prefetch {channel.prefetch})"
            for channel in self._channels
            if channel.unacked
        ]
        reasons += [
            f"{queue.name}: {len(queue.ready)} ready"
            for queue in self._queues.values()
            if queue.ready and queue.consumers
        ]
        if self._tasks:
            reasons.append(f"{len(self._tasks)} consumer callbacks running")
        return reasons

    async def wait_idle(self) -> None:
        """Return once no delivery is unsettled and no consumed queue has ready messages."""
        while self.busy():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def wait_changed(self) -> None:
        """Return at the next change (a publish, a settlement, a consumer callback ending)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def next_due(self) -> float | None:
        """When (on the virtual clock) the next delayed message is due; None if none is."""
        delayed = self._delayed[0][0] if self._delayed else None
        return min((t for t in (delayed, self.held.next_due()) if t is not None), default=None)

    def advance(self) -> bool:
        """Jump the virtual clock to the next delayed message and release all now due."""
        due = self.next_due()
        if due is None:
            return False
        self.now = max(self.now, due)
        while self._delayed and self._delayed[0][0] <= self.now:
            _, _, name, stored = heapq.heappop(self._delayed)
            self._dead_letter_expired(self._queues[name], stored)
        for routing_key, held in self.held.release(self.now):
            # its `fw-not-before` becomes the real time: the virtual clock ran ahead, and a
            # worker reading the header against the real clock must see the command as due
            headers = dict(held.headers)
            if names.NOT_BEFORE in headers:
                headers[names.NOT_BEFORE] = int(time.time() * 1000)  # rounded down: due
            released = replace(held, headers=headers)
            self.publish(released, names.COMMANDS_EXCHANGE, routing_key, mandatory=False)
        self.changed()
        return True

    def _dead_letter_expired(self, queue: _Queue, stored: StoredMessage) -> None:
        """What the broker does with an expired message: route it to the queue's DLX."""
        exchange = str(queue.arguments.get("x-dead-letter-exchange", ""))
        key = str(queue.arguments.get("x-dead-letter-routing-key", ""))
        for name in self._targets(exchange, key, stored.headers):
            self._enqueue(self._queues[name], replace(stored, expiration_ms=None))

    async def close(self) -> None:
        """Cancel consumer callbacks still running (their deliveries stay unsettled)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _has_room(consumer: _Consumer, queue: str) -> bool:
    """Prefetch is per consumer (basic.qos without `global`): its unsettled deliveries."""
    channel = consumer.channel
    taken = sum(1 for d in channel.unacked.values() if d.queue == queue)
    return taken < channel.prefetch


def _all(arguments: tuple[tuple[str, str], ...], headers: Any) -> bool:
    """A headers-exchange binding with `x-match` all: every other argument equals a header."""
    return all(headers.get(k) == v for k, v in arguments if not k.startswith("x-"))


def _matches(kind: str, binding_key: str, routing_key: str) -> bool:
    """Direct: equal keys. Topic: dot-separated words, `*` one word, `#` zero or more."""
    if kind != "topic":
        return binding_key == routing_key
    return _topic(binding_key.split("."), routing_key.split("."))


def _topic(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _topic(rest, words[1:])
