"""`MemoryBus`: the Bus API and semantics in process, for unit tests of services.

The same Worker subclasses run on it unchanged (it satisfies `framework.transport.Transport`),
and everything a handler can observe goes through the same code as on RabbitMQ: the
envelope (`to_amqp`/`from_amqp`), `handling.process`, `settlement.decide` and
`settle.apply_settlement`. Only the broker is replaced (`MemoryBroker`).

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
is real time, and it jumps the virtual clock itself only within that budget (see `request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aio_pika
from aio_pika.abc import AbstractChannel
from pydantic import BaseModel, SecretStr

from framework import names
from framework.envelope import to_amqp
from framework.errors import Unroutable
from framework.idempotency import IdempotencyStore, MemoryStore
from framework.keys import new_key
from framework.message_size import refuse_oversized
from framework.messages import Command, Event, Message, is_command, require_kind
from framework.outbox.unit_of_work import refuse_direct_publish
from framework.outbox.writer import OutboxWriter
from framework.outgoing import outgoing_envelope
from framework.reply import PendingReplies, decode_reply, request_timeout, unroutable_request
from framework.send_batch import raise_for_failures, send_batch
from framework.settings import Settings
from framework.testing.memory_broker import (
    MemoryBroker,
    MemoryChannel,
    MemoryDelivery,
    StoredMessage,
)
from framework.topology import EXCHANGES
from framework.tracing import open_tracing
from framework.worker import Worker
from framework.worker_spec import build_spec

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from framework.spans import Tracing

W = TypeVar("W", bound=Worker)
M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class Published:
    """A message the bus accepted (from a test or from a handler's `ctx.publish`/`ctx.send`)."""

    message: Message
    key: str
    correlation_id: str
    causation_id: str | None
    deadline_ms: int | None
    routed_to: tuple[str, ...]


class MemoryPublisher:
    """Routes AMQP messages into the in-memory broker; 'confirmed' once stored."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def publish(
        self,
        message: aio_pika.Message,
        exchange: str,
        routing_key: str,
        *,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        if not message.message_id:
            raise ValueError("every published message needs a message_id")
        self._broker.publish(message, exchange, routing_key, mandatory=mandatory)


class MemoryBus:
    """An in-memory bus with the public API of `Bus`. Several may share one `MemoryBroker`."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        service: str | None = None,
        idempotency: IdempotencyStore | None = None,
        broker: MemoryBroker | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.service = service or self.settings.service_name
        self._tracer_provider = tracer_provider
        self.tracing: Tracing | None = None  # as `Bus.tracing`: set by `start`
        self.broker = broker or MemoryBroker()
        self._owns_broker = broker is None
        self._store: IdempotencyStore = idempotency or MemoryStore()
        self._owns_store = idempotency is None
        self._publisher = MemoryPublisher(self.broker)
        self.published: list[Published] = []
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []
        self._pending = PendingReplies()
        self._reply_to: str | None = None
        self._reply_channel: MemoryChannel | None = None

    def __repr__(self) -> str:
        return f"MemoryBus(service={self.service!r})"

    # ---- lifecycle ----------------------------------------------------------------------

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

    async def start(self) -> None:
        """Declare the two exchanges; OpenTelemetry spans if a tracer provider records them."""
        self.tracing = open_tracing(self._tracer_provider)
        self.broker.apply(EXCHANGES)

    async def close(self) -> None:
        """Stop the workers started with `start_worker`, then release what this bus owns."""
        for worker, task in reversed(self._workers):
            await worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._pending.cancel_all()
        if self._reply_channel is not None and self._reply_to is not None:
            await self._reply_channel.close()
            self.broker.delete_queue(self._reply_to)
            self._reply_to = self._reply_channel = None
        if self._owns_broker:
            await self.broker.close()
        if self._owns_store:
            await self._store.close()

    # ---- what workers use (framework.transport.Transport) --------------------------------

    @property
    def publisher(self) -> MemoryPublisher:
        return self._publisher

    @property
    def idempotency(self) -> IdempotencyStore:
        return self._store

    @property
    def idempotency_url(self) -> SecretStr | None:
        """No shared store: every worker of an in-memory broker is in this process."""
        return None

    async def consumer_count(self, queue: str) -> int | None:
        """Not counted: in one process the in-memory store is shared by construction."""
        return None

    async def consume_channel(self, prefetch: int) -> AbstractChannel:
        """A consuming channel; it has the part of aio-pika's channel API the Worker uses."""
        return cast(AbstractChannel, self.broker.channel(prefetch))

    def add_reconnect_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """An in-process bus never reconnects: nothing to call back."""

    def remove_reconnect_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """See `add_reconnect_listener`."""

    async def declare(self, worker: type[Worker]) -> None:
        """Declare a worker's topology (queues, delay tiers, DLQ, bindings), no consuming."""
        self.broker.apply(build_spec(worker).topology)

    # ---- publishing (same signatures and checks as Bus) ----------------------------------

    async def send(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
        traceparent: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Send a command to the one queue that handles it (`Unroutable` if none)."""
        require_kind(command, command=True, verb="send")
        refuse_direct_publish("send")
        return await self._emit(
            command, idempotency_key, correlation_id, causation_id, deadline, ttl, traceparent
        )

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
        traceparent: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Publish an event to every subscribed queue (none is fine)."""
        require_kind(event, command=False, verb="publish")
        refuse_direct_publish("publish")
        return await self._emit(
            event, idempotency_key, correlation_id, causation_id, deadline, ttl, traceparent
        )

    async def send_many(
        self,
        commands: Sequence[Command],
        *,
        idempotency_keys: Sequence[str] | None = None,
        window: int = 256,
        timeout: float | None = None,
        stop_on_failure: bool = True,
    ) -> list[str]:
        """Send many commands, like `Bus.send_many`: the keys in order, or `SendManyFailed`
        with each key's fate (`results`) and what to send again (`unconfirmed`)."""
        for command in commands:
            require_kind(command, command=True, verb="send")
        keys = (
            list(idempotency_keys)
            if idempotency_keys is not None
            else [new_key() for _ in commands]
        )

        async def one(command: Command, key: str) -> str:
            return await self.send(command, idempotency_key=key, timeout=timeout)

        results = await send_batch(
            one, commands, keys, window=window, stop_on_failure=stop_on_failure
        )
        return raise_for_failures(results)

    async def request(
        self,
        command: Command,
        *,
        timeout: float = 10.0,
        reply_type: type[R] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Any:
        """Send `command` and wait for the handler's return value, like `Bus.request`.

        The request carries `reply_to` (this bus's reply queue) and a deadline of `timeout`
        seconds; the worker answers through the broker exactly as on RabbitMQ, and the reply
        is matched by its `fw-in-reply-to` header. Raises `Unroutable` when no queue handles
        the command, `RemoteError` when the handler failed terminally, `RequestTimeout` when
        no reply comes within `timeout` seconds of real time (a later reply is discarded).

        No `drain()` is needed: deliveries run as soon as the event loop does. While it
        waits, the request also drives the virtual clock like `drain()` (so a retried
        request is answered without real delays), but only as far as its own budget allows:
        real time spent plus virtual time skipped stays under `timeout`, so a retry delay
        longer than the timeout makes the request time out, as it would on RabbitMQ.
        """
        require_kind(command, command=True, verb="request")
        reply_to = self._reply_queue()
        key = idempotency_key or new_key()
        future = self._pending.expect(key)
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self._emit(
                        command, key, correlation_id, None, None, timeout, None, reply_to=reply_to
                    )
                except Unroutable as exc:  # the same text as Bus.request
                    raise unroutable_request(command.type_name, key) from exc
                body, status = await self._await_reply(future, timeout)
        except TimeoutError as exc:
            raise request_timeout(command.type_name, key, timeout) from exc
        finally:
            self._pending.forget(key)
        return decode_reply(body, status, reply_type)

    async def _await_reply(
        self, future: asyncio.Future[tuple[bytes, str]], timeout: float
    ) -> tuple[bytes, str]:
        """Wait for `future`, jumping the virtual clock when nothing else can happen."""
        loop = asyncio.get_running_loop()
        started, virtual_start = loop.time(), self.broker.now
        while not future.done():
            await _first(future, self.broker.wait_idle())
            if future.done() or self.broker.busy():
                continue
            due = self.broker.next_due()
            if due is not None and (loop.time() - started) + (due - virtual_start) < timeout:
                self.broker.advance()
            else:  # nothing due within the budget: wait for news (or the real timeout)
                await _first(future, self.broker.wait_changed())
        return future.result()

    def _reply_queue(self) -> str:
        """This bus's exclusive reply queue (the stand-in for `amq.rabbitmq.reply-to`)."""
        if self._reply_to is None:
            name = f"{names.DIRECT_REPLY_TO}.memory.{os.urandom(6).hex()}"
            self.broker.ensure_queue(name, {})
            self._reply_channel = self.broker.channel(prefetch=2**31 - 1)
            self.broker.add_consumer(name, self._on_reply, self._reply_channel)
            self._reply_to = name
        return self._reply_to

    async def _on_reply(self, delivery: MemoryDelivery) -> None:
        await delivery.ack()  # direct reply-to is no-ack
        self._pending.deliver(delivery.headers, delivery.body)

    async def _emit(
        self,
        message: Message,
        key: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
        traceparent: str | None,
        *,
        reply_to: str | None = None,
    ) -> str:
        key = key or new_key()
        fields = (message, key, correlation_id, causation_id, deadline, ttl)
        if self.tracing is None:
            return self._route(*fields, traceparent, None, reply_to)
        with self.tracing.producing(message, key, correlation_id, traceparent) as trace:
            return self._route(*fields, *trace.headers, reply_to)

    def _route(
        self,
        message: Message,
        key: str,
        correlation_id: str | None,
        causation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
        traceparent: str | None,
        tracestate: str | None,
        reply_to: str | None,
    ) -> str:
        envelope, expiration = outgoing_envelope(
            message,
            key,
            app_id=self.service,
            correlation_id=correlation_id,
            causation_id=causation_id,
            deadline=deadline,
            ttl=ttl,
            traceparent=traceparent,
            reply_to=reply_to,
        )
        if tracestate is not None:
            envelope = replace(envelope, headers={**envelope.headers, names.TRACESTATE: tracestate})
        refuse_oversized(
            len(envelope.body),
            self.settings.max_message_size,
            routing_key=message.type_name,
            message_id=key,
        )
        deadline_ms = envelope.deadline_ms
        command = is_command(type(message))
        routed = self.broker.publish(
            to_amqp(envelope, expiration_ms=expiration),
            names.COMMANDS_EXCHANGE if command else names.EVENTS_EXCHANGE,
            message.type_name,
            mandatory=command,
        )
        self.published.append(
            Published(
                message, key, envelope.correlation_id, causation_id, deadline_ms, tuple(routed)
            )
        )
        return key

    # ---- test helpers -------------------------------------------------------------------

    def outbox(self, connection: Any, *, stream: str | None = None) -> OutboxWriter:
        """As `Bus.outbox`: messages written in a transaction you own, for a relay to send."""
        return OutboxWriter(connection, app_id=self.service, stream=stream)

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
        self.broker.publish(aio_pika.Message(body=body, **properties), exchange, routing_key)


async def _first(future: asyncio.Future[Any], other: Awaitable[None]) -> None:
    """Wait until `future` or `other` is done; `other` is cancelled if still running."""
    task = asyncio.ensure_future(other)
    try:
        await asyncio.wait({future, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
