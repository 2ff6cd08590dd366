"""The broker port on RabbitMQ: connections, confirmed publishes, consumers, coalesced acks.

Publishing and consuming use separate connections, so a publisher blocked by a broker
resource alarm cannot stall the consumers' acks. Every framework message is encoded by
one function, `envelope.amqp_properties`, and published by one `Publisher` (requests by
the `RequestClient`'s own publisher, which consumes direct reply-to on its channel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pydantic import BaseModel

from framework.consume.startup_checks import check_worker_queues
from framework.consume.worker_spec import WorkerSpec
from framework.errors import FrameworkError
from framework.ops.queue_stats import QueueStats
from framework.publish.request_reply import RequestClient
from framework.settings import Settings
from framework.wire import names
from framework.wire.acks import AckCoalescer
from framework.wire.connection import open_connection
from framework.wire.consumer import Consumer
from framework.wire.declare import declare
from framework.wire.envelope import Envelope, amqp_properties
from framework.wire.port import Closer, OnDelivery, QueueCounts
from framework.wire.publisher import Publisher
from framework.wire.robust import JitteredRobustConnection
from framework.wire.topology import QueueSpec, Topology
from framework.wire.urls import mask_urls

M = TypeVar("M", bound=BaseModel)

NOT_CONNECTED = "the bus is not connected: use `async with Bus.connect(url)`"


class RabbitPort:
    """`BrokerPort` on RabbitMQ (aio-pika's robust connections, aiormq channels)."""

    def __init__(self, urls: Sequence[str], settings: Settings, service: str) -> None:
        self.urls = list(urls)
        self._settings = settings
        self._service = service
        self._publish_conn: JitteredRobustConnection | None = None
        self._consume_conn: JitteredRobustConnection | None = None
        self._publisher: Publisher | None = None
        self._requests: RequestClient | None = None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Open both connections and the publisher; `on_reconnect` after each reconnect."""
        self._on_reconnect = on_reconnect
        self._publish_conn = await self._open(f"{self._service}.publish")
        self._consume_conn = await self._open(f"{self._service}.consume")
        self._publisher = Publisher(self._publish_conn, self._settings.publish_timeout)
        for conn in (self._publish_conn, self._consume_conn):
            conn.reconnect_callbacks.add(self._reconnected)

    async def _open(self, name: str) -> JitteredRobustConnection:
        s = self._settings
        return await open_connection(
            self.urls,
            name=name,
            attempts=s.connect_attempts,
            timeout=s.connect_timeout,
            heartbeat=s.heartbeat,
            allow_insecure_tls=s.allow_insecure_tls,
        )

    async def _reconnected(self, *_: Any) -> None:
        if self._on_reconnect is not None:
            await self._on_reconnect()

    async def close(self) -> None:
        """Close the request client, the publisher and both connections."""
        if self._requests is not None:
            await self._requests.close()
            self._requests = None
        if self._publisher is not None:
            await self._publisher.close()
        for conn in (self._consume_conn, self._publish_conn):
            if conn is not None and not conn.is_closed:
                await conn.close()
        self._publisher = self._publish_conn = self._consume_conn = None

    # ---- what only RabbitMQ has (Bus's broker-specific accessors) ------------------------

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise FrameworkError(NOT_CONNECTED)
        return self._publisher

    @property
    def server_version(self) -> str | None:
        conn = self._publish_conn
        return None if conn is None else conn.server_version

    @property
    def masked_url(self) -> str:
        conn = self._publish_conn
        return conn.masked_url if conn is not None else mask_urls(self.urls)

    @property
    def is_connected(self) -> bool:
        return all(
            c is not None and not c.is_closed and c.connected.is_set()
            for c in (self._publish_conn, self._consume_conn)
        )

    async def consume_channel(self, prefetch: int) -> AbstractRobustChannel:
        """A new channel on the consuming connection with QoS = prefetch."""
        channel = await _connected(self._consume_conn).channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def queue_stats(
        self, queue: str, retry_queues: Sequence[str], target_drain: float
    ) -> QueueStats:
        """`Bus.queue_stats`: the management API when it answers, else passive declares."""
        from framework.ops.management import ManagementApi
        from framework.ops.queue_source import read_stats

        conn = _connected(self._publish_conn)
        api = ManagementApi.for_node(self.urls[0], self._settings)

        async def connection() -> AbstractRobustConnection:
            return conn

        snapshot = await read_stats(
            api,
            connection,
            [queue],
            target_drain=target_drain,
            retry_queues={queue: list(retry_queues)} if retry_queues else None,
        )
        return snapshot.rows[0]

    # ---- the port -----------------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        """Declare `topology`; queues an earlier version declared keep their arguments where
        the topology allows (`QueueSpec.accepted_arguments`); any other mismatch raises
        `QueueArgumentsDiffer`."""
        await declare(_connected(self._publish_conn), topology)

    async def check_worker(self, spec: WorkerSpec, worker_name: str, log: Any) -> None:
        """The queues and policies as the broker applies them (`startup_checks`)."""
        await check_worker_queues(spec, worker_name, self._settings, self.urls[0], log)

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
        """Encode (`amqp_properties`) and publish; returns once the broker confirmed."""
        await self.publisher.publish_properties(
            envelope.body,
            amqp_properties(envelope, expiration_ms=expiration_ms),
            exchange,
            routing_key,
            mandatory=mandatory,
            timeout=timeout,
        )

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
        """A request over direct reply-to (`RequestClient`), through the publisher path."""
        if self._requests is None:
            self._requests = RequestClient(
                _connected(self._publish_conn), self._settings.publish_timeout
            )
        request = replace(envelope, reply_to=names.DIRECT_REPLY_TO)
        return await self._requests.request_properties(
            request.body,
            amqp_properties(request, expiration_ms=expiration_ms),
            routing_key,
            timeout,
            reply_type,
            on_sent=on_sent,
        )

    async def subscribe(
        self,
        queue: QueueSpec,
        prefetch: int,
        on_delivery: OnDelivery,
        *,
        arguments: dict[str, Any] | None = None,
    ) -> Consumer:
        """A consumer of `queue` on a new channel of the consuming connection."""
        channel = await self.consume_channel(prefetch)
        return Consumer(channel, queue, on_delivery, arguments)

    def acker(self, *, max_batch: int, max_delay: float, prefetch: int) -> AckCoalescer:
        """Coalesced acks (`basic.ack(multiple=True)` for runs of handled deliveries)."""
        return AckCoalescer(max_batch=max_batch, max_delay=max_delay, prefetch=prefetch)

    async def consumer_count(self, queue: str) -> int | None:
        """How many consumers `queue` has (a passive declare on a short-lived channel)."""
        return (await self._declare_ok(queue)).consumer_count

    async def ready_count(self, queue: str) -> int:
        """Messages ready in `queue` (a passive declare on a short-lived channel)."""
        return (await self._declare_ok(queue)).message_count

    async def _declare_ok(self, queue: str) -> QueueCounts:
        """A passive declare's counts, on a channel of its own: a queue that is missing
        closes only that channel. (Not a cached queue object: a robust channel answers a
        repeated passive declare from its cache, with the first reading.)"""
        channel = await _connected(self._consume_conn).channel()
        try:
            result = (await channel.declare_queue(queue, passive=True)).declaration_result
            return QueueCounts(int(result.message_count or 0), int(result.consumer_count or 0))
        finally:
            await channel.close()

    async def follow(self, exchange: str, queue: str, on_body: Callable[[bytes], None]) -> Closer:
        """An exclusive, auto-deleted queue bound to all of `exchange`, consumed without
        acks; the robust channel restores queue, binding and consumer after a reconnect."""
        channel = await _connected(self._consume_conn).channel()
        try:
            declared = await channel.declare_queue(
                queue, exclusive=True, auto_delete=True, durable=False
            )
            await declared.bind(exchange, "#")

            async def deliver(message: AbstractIncomingMessage) -> None:
                on_body(message.body)

            await declared.consume(deliver, no_ack=True)
        except BaseException:
            await channel.close()
            raise
        return _ChannelCloser(channel)


class _ChannelCloser:
    """Closes the channel of a `follow` (its exclusive queue goes with it)."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel

    async def close(self) -> None:
        if not self._channel.is_closed:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._channel.close()


def _connected(conn: JitteredRobustConnection | None) -> JitteredRobustConnection:
    if conn is None:
        raise FrameworkError(NOT_CONNECTED)
    return conn
