"""The Bus: connections, confirmed sends and publishes, topology declaration.

Publishing and consuming use separate connections, so a publisher blocked by a broker
resource alarm cannot stall the consumers' acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from pydantic import BaseModel, SecretStr

from framework import names
from framework.broker_checks import version_problems
from framework.connection import open_connection
from framework.declare import declare
from framework.envelope import amqp_properties, to_amqp
from framework.errors import FrameworkError
from framework.idempotency import IdempotencyStore, open_store
from framework.idempotency.factory import is_shared
from framework.keys import new_key
from framework.message_size import refuse_oversized
from framework.messages import Command, Event, Message, is_command, require_kind
from framework.outbox.unit_of_work import refuse_direct_publish
from framework.outbox.writer import OutboxWriter
from framework.outgoing import outgoing_envelope
from framework.publisher import Publisher
from framework.request_reply import RequestClient
from framework.robust import JitteredRobustConnection
from framework.send_batch import raise_for_failures, send_batch
from framework.send_retry import RetryOnOverload
from framework.settings import Settings
from framework.startup_checks import check_worker_queues, refuse_unheld_consumer_timeout
from framework.topology import EXCHANGES, Topology
from framework.tracing import open_tracing
from framework.urls import mask_urls, split_urls
from framework.worker_spec import build_spec

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from framework.envelope import Envelope
    from framework.queue_stats import QueueStats
    from framework.spans import Tracing
    from framework.worker import Worker

M = TypeVar("M", bound=BaseModel)


class Bus:
    """A connection to the broker for sending, publishing and running workers.

    Use `async with Bus.connect(url) as bus:`; the idempotency store is a Bus-level setting
    shared by every worker on this bus. With `opentelemetry-api` installed, sends, publishes
    and its workers' deliveries are spans of `tracer_provider` (default: the global one, if
    an SDK set it before the bus starts; otherwise no spans, at no cost).
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        settings: Settings | None = None,
        service: str | None = None,
        idempotency: IdempotencyStore | str | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._urls = (
            (split_urls(url) if isinstance(url, str) else list(url))
            if url
            else (self.settings.amqp_urls)
        )
        self.service = service or self.settings.service_name
        self._idempotency_arg = idempotency
        self._tracer_provider = tracer_provider
        self.tracing: Tracing | None = None  # OpenTelemetry spans: set by `start` if recorded
        self._store: IdempotencyStore | None = None
        self._publish_conn: JitteredRobustConnection | None = None
        self._consume_conn: JitteredRobustConnection | None = None
        self._publisher: Publisher | None = None
        self._requests: RequestClient | None = None
        self._declared: list[Topology] = [EXCHANGES]
        self._reconnect_listeners: list[Callable[[], Awaitable[None]]] = []
        self._topology_check: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("framework.bus").bind(service=self.service)

    @classmethod
    def connect(cls, url: str | Sequence[str] | None = None, **kwargs: Any) -> Bus:
        """A bus for `url` (default: settings / AMQP_URL), to be entered with `async with`.

        Several URLs (a sequence, or comma-separated) are the nodes of one cluster: connecting
        and every reconnect rotate through them with jittered backoff.
        """
        return cls(url, **kwargs)

    def __repr__(self) -> str:
        return f"Bus(service={self.service!r}, url={self.masked_url!r})"

    @property
    def masked_url(self) -> str:
        """The URL of the node the bus is connected to (password hidden); before connecting,
        every configured URL."""
        conn = self._publish_conn
        return conn.masked_url if conn is not None else mask_urls(self._urls)

    # ---- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Bus:
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
        """Open both connections, declare the exchanges, open the idempotency store."""
        s = self.settings
        self.tracing = open_tracing(self._tracer_provider)
        self._publish_conn = await self._open(f"{self.service}.publish")
        try:
            self._consume_conn = await self._open(f"{self.service}.consume")
            self._publisher = Publisher(self._publish_conn, s.publish_timeout)
            await self._apply(EXCHANGES)
            for conn in (self._publish_conn, self._consume_conn):
                conn.reconnect_callbacks.add(self._on_reconnect)
            arg = self._idempotency_arg
            self._store = (
                await open_store(self._store_url(), timeout=s.idempotency_timeout)
                if arg is None or isinstance(arg, str)
                else arg
            )
        except BaseException:
            await self.close()
            raise
        if s.topology_check_interval > 0:
            self._topology_check = asyncio.create_task(
                self._check_topology(s.topology_check_interval)
            )
        version = self._publish_conn.server_version
        self._log.info("bus.connected", url=self.masked_url, broker=version)
        for problem in version_problems(version):
            self._log.warning("bus.broker_version_untested", detail=problem.text)

    async def _open(self, name: str) -> JitteredRobustConnection:
        s = self.settings
        return await open_connection(
            self._urls,
            name=name,
            attempts=s.connect_attempts,
            timeout=s.connect_timeout,
            heartbeat=s.heartbeat,
            allow_insecure_tls=s.allow_insecure_tls,
        )

    async def close(self) -> None:
        """Close the publisher, both connections and the idempotency store."""
        if self._topology_check is not None:
            self._topology_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._topology_check
            self._topology_check = None
        if self._requests is not None:
            await self._requests.close()
            self._requests = None
        if self._publisher is not None:
            await self._publisher.close()
        for conn in (self._consume_conn, self._publish_conn):
            if conn is not None and not conn.is_closed:
                await conn.close()
        # Close the store only if this bus opened it (from a URL), not one passed in.
        if self._store is not None and not _is_store(self._idempotency_arg):
            await self._store.close()
        self._store = None
        self._publisher = self._publish_conn = self._consume_conn = None

    # ---- accessors used by workers --------------------------------------------------------

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise FrameworkError("the bus is not connected: use `async with Bus.connect(url)`")
        return self._publisher

    @property
    def idempotency(self) -> IdempotencyStore:
        if self._store is None:
            raise FrameworkError("the bus is not connected: use `async with Bus.connect(url)`")
        return self._store

    @property
    def idempotency_url(self) -> SecretStr | None:
        """The URL of the shared store this bus opened (None: in-process, or given as an
        object); workers open a second connection to it to renew their leases."""
        arg = self._idempotency_arg
        if arg is not None and not isinstance(arg, str):
            return None
        url = self._store_url()
        return SecretStr(url) if is_shared(url) else None

    def _store_url(self) -> str:
        arg = self._idempotency_arg
        return arg if isinstance(arg, str) else self.settings.idempotency_url.get_secret_value()

    async def consumer_count(self, queue: str) -> int | None:
        """How many consumers `queue` has (a passive declare on a short-lived channel)."""
        channel = await self._connection(self._consume_conn).channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            result = declared.declaration_result
            return int(result.consumer_count or 0)
        finally:
            await channel.close()

    def _connection(self, conn: AbstractRobustConnection | None) -> AbstractRobustConnection:
        if conn is None:
            raise FrameworkError("the bus is not connected: use `async with Bus.connect(url)`")
        return conn

    async def consume_channel(self, prefetch: int) -> AbstractChannel:
        """A new channel on the consuming connection with QoS = prefetch."""
        channel = await self._connection(self._consume_conn).channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    # ---- topology ----------------------------------------------------------------------

    async def declare(self, worker: type[Worker]) -> None:
        """Declare a worker's topology (queues, delay tiers, DLQ, bindings), no consuming.

        The first time, also checks the broker against what the worker needs: a handler
        `timeout` at or above the broker's consumer timeout (`broker_consumer_timeout`, a
        server setting no client can read), and, when `FRAMEWORK_MANAGEMENT_URL` is set, the
        queues and policies as the broker applies them (`framework.startup_checks`). An
        error raises `ConfigurationError` saying what to change; a warning is logged."""
        spec = build_spec(worker)
        refuse_unheld_consumer_timeout(spec, worker.__name__, self.settings)
        await self._apply(spec.topology)
        if spec.topology not in self._declared:
            self._declared.append(spec.topology)
            await check_worker_queues(
                spec, worker.__name__, self.settings, self._urls[0], self._log
            )

    async def _apply(self, topology: Topology) -> None:
        """Declare `topology`; queues an earlier version declared keep their arguments where
        the topology allows (`QueueSpec.accepted_arguments`); any other mismatch raises
        `QueueArgumentsDiffer`."""
        await declare(self._connection(self._publish_conn), topology)

    async def _on_reconnect(self, *_: Any) -> None:
        self._log.warning("bus.reconnected", url=self.masked_url)
        for topology in list(self._declared):
            await self._apply(topology)
        for listener in list(self._reconnect_listeners):
            await listener()

    async def _check_topology(self, interval: float) -> None:
        """Re-declare everything declared, on a slow jittered timer. An exchange deleted and
        re-created has lost its bindings, and nothing tells the consumers: without this,
        its messages go nowhere until the next reconnect."""
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                async with asyncio.timeout(self.settings.publish_timeout):
                    for topology in list(self._declared):
                        await self._apply(topology)
            except Exception as exc:  # noqa: BLE001 - logged and retried next check
                self._log.error(
                    "bus.topology_check_failed",
                    error=str(exc) or repr(exc),
                    hint="messages for the queues of this bus may be dropped "
                    "until the topology is whole again; retried next check",
                )

    def add_reconnect_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Run `listener` after each reconnect, once topology is declared again."""
        self._reconnect_listeners.append(listener)

    def remove_reconnect_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        if listener in self._reconnect_listeners:
            self._reconnect_listeners.remove(listener)

    @property
    def is_connected(self) -> bool:
        """True while both connections are up (False during a reconnect or after close)."""
        return all(
            c is not None and not c.is_closed and c.connected.is_set()
            for c in (self._publish_conn, self._consume_conn)
        )

    async def queue_stats(self, queue: str, *, target_drain: float = 60.0) -> QueueStats:
        """Depth, unacked, consumers, retry and DLQ depth, rates and drain time of `queue`.

        The same numbers as `framework queues`: from the management API when it answers,
        else from passive declares (then `unacked` and rates are None).
        """
        from framework.management import ManagementApi
        from framework.queue_source import declared_retry_queues, read_stats

        conn = self._connection(self._publish_conn)
        api = ManagementApi.for_node(self._urls[0], self.settings)
        tiers = declared_retry_queues(self._declared, queue)

        async def connection() -> AbstractRobustConnection:
            return conn

        snapshot = await read_stats(
            api,
            connection,
            [queue],
            target_drain=target_drain,
            retry_queues={queue: tiers} if tiers else None,
        )
        return snapshot.rows[0]

    # ---- publishing ----------------------------------------------------------------------

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
        retry: RetryOnOverload | None = None,
    ) -> str:
        """Send a command to the one queue that handles it; returns its key once confirmed.

        Raises `Unroutable` if no queue handles it, `Overloaded` if that queue is full,
        `PublishTimeout` if the broker does not confirm within the publish timeout.
        With `retry=RetryOnOverload(within=...)`, a full queue is retried with jittered
        backoff until `within` seconds have passed (same key: no duplicates downstream).
        """
        require_kind(command, command=True, verb="send")
        refuse_direct_publish("send")
        key = idempotency_key or new_key()
        if retry is None:
            return await self._emit(
                command, key, correlation_id, causation_id, deadline, ttl, traceparent, timeout
            )

        async def attempt() -> str:
            return await self._emit(
                command, key, correlation_id, causation_id, deadline, ttl, traceparent, timeout
            )

        return await retry.call(attempt)

    async def send_many(
        self,
        commands: Sequence[Command],
        *,
        idempotency_keys: Sequence[str] | None = None,
        window: int = 256,
        timeout: float | None = None,
        stop_on_failure: bool = True,
    ) -> list[str]:
        """Send many commands with up to `window` unconfirmed at a time (pipelined confirms).

        Returns the keys in order once every command is confirmed. Otherwise raises
        `SendManyFailed` (also an `Unroutable`/`Overloaded`/`PublishTimeout` like its first
        failure) after the in-flight sends finish; its `results` give each key and fate and
        `unconfirmed` what to send again with the same keys. With `stop_on_failure` (the
        default) no new send starts after a failure: those are `not-sent`.
        """
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
        """Publish an event to every subscribed queue; returns its key once confirmed."""
        require_kind(event, command=False, verb="publish")
        refuse_direct_publish("publish")
        return await self._emit(
            event,
            idempotency_key,
            correlation_id,
            causation_id,
            deadline,
            ttl,
            traceparent,
            timeout,
        )

    async def _emit(
        self,
        message: Message,
        key: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
        traceparent: str | None,
        timeout: float | None,
    ) -> str:
        key = key or new_key()
        fields = (key, correlation_id, causation_id, deadline, ttl)
        if self.tracing is None:
            await self._publish(message, *self._envelope(message, *fields, traceparent), timeout)
            return key
        with self.tracing.producing(message, key, correlation_id, traceparent) as trace:
            envelope, expiration = self._envelope(message, *fields, *trace.headers)
            await self._publish(message, envelope, expiration, timeout)
        return key

    async def _publish(
        self, message: Message, envelope: Envelope, expiration: int | None, timeout: float | None
    ) -> None:
        command = is_command(type(message))
        await self.publisher.publish_properties(
            envelope.body,
            amqp_properties(envelope, expiration_ms=expiration),
            names.COMMANDS_EXCHANGE if command else names.EVENTS_EXCHANGE,
            message.type_name,
            mandatory=command,
            timeout=timeout,
        )

    def outbox(self, connection: Any, *, stream: str | None = None) -> OutboxWriter:
        """Send and publish through the outbox inside a transaction you own (outside handlers).

        `connection`: a `sqlite3.Connection` or asyncpg connection with a transaction open;
        the messages commit or roll back with your own writes, and a relay on that database
        (`framework.outbox.Relay`, or a worker's) publishes them after the commit.
        """
        return OutboxWriter(connection, app_id=self.service, stream=stream)

    def _envelope(
        self,
        message: Message,
        key: str,
        correlation_id: str | None,
        causation_id: str | None,
        deadline: datetime | None,
        ttl: float | None,
        traceparent: str | None,
        tracestate: str | None = None,
    ) -> tuple[Envelope, int | None]:
        """A new message's envelope and expiration (ms), refused if over the size limit."""
        envelope, expiration = outgoing_envelope(
            message,
            key,
            app_id=self.service,
            correlation_id=correlation_id,
            causation_id=causation_id,
            deadline=deadline,
            ttl=ttl,
            traceparent=traceparent,
        )
        if tracestate is not None:
            envelope = replace(envelope, headers={**envelope.headers, names.TRACESTATE: tracestate})
        refuse_oversized(
            len(envelope.body),
            self.settings.max_message_size,
            routing_key=message.type_name,
            message_id=key,
        )
        return envelope, expiration

    async def request(
        self,
        command: Command,
        *,
        timeout: float = 10.0,
        reply_type: type[M] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Any:
        """Send `command` and wait for the handler's return value (direct reply-to).

        Raises `RequestTimeout` when no reply comes within `timeout` (the request also
        carries that deadline, so a worker will not start it late), `RemoteError` when the
        handler failed terminally, `Unroutable` when no worker handles the command.
        """
        require_kind(command, command=True, verb="request")
        if self._requests is None:
            self._requests = RequestClient(
                self._connection(self._publish_conn), self.settings.publish_timeout
            )
        key = idempotency_key or new_key()
        requests, fields = self._requests, (key, correlation_id, None, None, timeout)
        if self.tracing is None:
            envelope, expiration = self._envelope(command, *fields, None)
            outgoing = to_amqp(envelope, expiration_ms=expiration)
            return await requests.request(outgoing, command.type_name, timeout, reply_type)
        # the span lasts until the reply (or the timeout): the request's round trip
        with self.tracing.producing(command, key, correlation_id, None) as trace:
            envelope, expiration = self._envelope(command, *fields, *trace.headers)
            outgoing = to_amqp(envelope, expiration_ms=expiration)
            return await requests.request(outgoing, command.type_name, timeout, reply_type)


def _is_store(arg: IdempotencyStore | str | None) -> bool:
    return arg is not None and not isinstance(arg, str)
