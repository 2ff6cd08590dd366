"""The Bus: connections, confirmed sends and publishes, topology declaration.

Publishing and consuming use separate connections, so a publisher blocked by a broker
resource alarm cannot stall the consumers' acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic import BaseModel, SecretStr

from framework.consume.broker_checks import version_problems
from framework.consume.startup_checks import refuse_unheld_consumer_timeout
from framework.consume.worker_spec import build_spec
from framework.errors import FrameworkError
from framework.idempotency import IdempotencyStore, open_store
from framework.idempotency.factory import is_shared
from framework.messages import Command, Event, Message, is_command, require_kind
from framework.ops.tracing import open_tracing
from framework.outbox.unit_of_work import refuse_direct_publish
from framework.outbox.writer import OutboxWriter
from framework.publish.outgoing import outgoing_envelope
from framework.publish.scheduling import requested_delay, scheduled
from framework.publish.send_batch import raise_for_failures, send_batch
from framework.publish.send_retry import RetryOnOverload
from framework.resilience.load_status import LOAD_TOPOLOGY, LoadFollower
from framework.settings import Settings
from framework.wire import names
from framework.wire.keys import new_key
from framework.wire.message_size import refuse_oversized
from framework.wire.port import BrokerPort
from framework.wire.publisher import Publisher
from framework.wire.rabbitmq import RabbitPort
from framework.wire.topology import EXCHANGES, SCHEDULE, Topology
from framework.wire.urls import split_urls

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel
    from opentelemetry.trace import TracerProvider

    from framework.ops.queue_stats import QueueStats
    from framework.ops.spans import Tracing
    from framework.wire.envelope import Envelope
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
        settings = settings or Settings()
        urls = (split_urls(url) if isinstance(url, str) else list(url)) if url else None
        self._rabbit: RabbitPort | None = RabbitPort(
            urls or settings.amqp_urls, settings, service or settings.service_name
        )
        self._setup(settings, service, idempotency, tracer_provider, self._rabbit)

    def _setup(
        self,
        settings: Settings,
        service: str | None,
        idempotency: IdempotencyStore | str | None,
        tracer_provider: TracerProvider | None,
        port: BrokerPort,
    ) -> None:
        self.settings = settings
        self.service = service or self.settings.service_name
        self.port: BrokerPort = port  # the broker below this bus (framework.wire.port)
        self._idempotency_arg = idempotency
        self._tracer_provider = tracer_provider
        self.tracing: Tracing | None = None  # OpenTelemetry spans: set by `start` if recorded
        self._store: IdempotencyStore | None = None
        self._declared: list[Topology] = [EXCHANGES]
        self._reconnect_listeners: list[Callable[[], Awaitable[None]]] = []
        self._topology_check: asyncio.Task[None] | None = None
        # called with each message this bus published (the in-memory bus records them)
        self._on_published: Callable[[Message, Envelope], None] | None = None
        self.load: LoadFollower | None = None  # load reports followed (shed_by_forecast)
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
        return self._broker().masked_url

    def _broker(self) -> RabbitPort:
        """The RabbitMQ port, for what only a RabbitMQ bus has (connections, channels)."""
        if self._rabbit is None:
            raise FrameworkError(f"{type(self).__name__} has no RabbitMQ connection")
        return self._rabbit

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
        """Connect, declare the exchanges, open the idempotency store."""
        s = self.settings
        self.tracing = open_tracing(self._tracer_provider)
        try:
            await self.port.open(self._on_reconnect)
            await self._apply(EXCHANGES)
            if s.shed_by_forecast:  # framework.resilience.load_status: fw.load, followed
                await self._apply(LOAD_TOPOLOGY)
                self._declared.append(LOAD_TOPOLOGY)
                self.load = LoadFollower(self.service)
                await self.load.start(self.port)
            self._store = await self._open_store()
        except BaseException:
            await self.close()
            raise
        if s.topology_check_interval > 0:
            self._topology_check = asyncio.create_task(
                self._check_topology(s.topology_check_interval)
            )
        if self._rabbit is not None:
            version = self._rabbit.server_version
            self._log.info("bus.connected", url=self.masked_url, broker=version)
            for problem in version_problems(version):
                self._log.warning("bus.broker_version_untested", detail=problem.text)

    async def _open_store(self) -> IdempotencyStore:
        arg = self._idempotency_arg
        if arg is None or isinstance(arg, str):
            return await open_store(self._store_url(), timeout=self.settings.idempotency_timeout)
        return arg

    async def close(self) -> None:
        """Close the broker port (publisher, connections) and the idempotency store."""
        if self._topology_check is not None:
            self._topology_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._topology_check
            self._topology_check = None
        if self.load is not None:
            await self.load.close()
            self.load = None
        await self.port.close()
        # Close the store only if this bus opened it (from a URL), not one passed in.
        if self._store is not None and not _is_store(self._idempotency_arg):
            await self._store.close()
        self._store = None

    # ---- accessors used by workers --------------------------------------------------------

    @property
    def publisher(self) -> Publisher:
        """The RabbitMQ publisher (publishes `aio_pika.Message`s with confirms)."""
        return self._broker().publisher

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
        """How many consumers `queue` has (None: not known)."""
        return await self.port.consumer_count(queue)

    async def consume_channel(self, prefetch: int) -> AbstractRobustChannel:
        """A new RabbitMQ channel on the consuming connection with QoS = prefetch."""
        return await self._broker().consume_channel(prefetch)

    # ---- topology ----------------------------------------------------------------------

    async def declare(self, worker: type[Worker]) -> None:
        """Declare a worker's topology (queues, delay tiers, DLQ, bindings), no consuming.

        The first time, also checks the broker against what the worker needs: a handler
        `timeout` at or above the broker's consumer timeout (`broker_consumer_timeout`, a
        server setting no client can read), and, when `FRAMEWORK_MANAGEMENT_URL` is set, the
        queues and policies as the broker applies them (`framework.consume.startup_checks`). An
        error raises `ConfigurationError` saying what to change; a warning is logged."""
        spec = build_spec(worker)
        refuse_unheld_consumer_timeout(spec, worker.__name__, self.settings)
        await self._apply(spec.topology)
        if spec.topology not in self._declared:
            self._declared.append(spec.topology)
            await self.port.check_worker(spec, worker.__name__, self._log)

    async def _apply(self, topology: Topology) -> None:
        """Declare `topology` on the broker (idempotent)."""
        await self.port.declare(topology)

    async def _on_reconnect(self) -> None:
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
        return self._broker().is_connected

    async def queue_stats(self, queue: str, *, target_drain: float = 60.0) -> QueueStats:
        """Depth, unacked, consumers, retry and DLQ depth, rates and drain time of `queue`.

        The same numbers as `framework queues`: from the management API when it answers,
        else from passive declares (then `unacked` and rates are None).
        """
        from framework.ops.queue_source import declared_retry_queues

        tiers = declared_retry_queues(self._declared, queue)
        return await self._broker().queue_stats(queue, tiers, target_drain)

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
        delay: float | None = None,
        not_before: datetime | None = None,
    ) -> str:
        """Send a command to the one queue that handles it; returns its key once confirmed.

        Raises `Unroutable` if no queue handles it, `Overloaded` if that queue is full,
        `PublishTimeout` if the broker does not confirm within the publish timeout.
        With `shed_by_forecast` on (settings), also `Overloaded` with `retry_after` when
        the queue is predicted to make it wait past its deadline (`deadline` / `ttl`).
        With `retry=RetryOnOverload(within=...)`, a full queue is retried with jittered
        backoff until `within` seconds have passed (same key: no duplicates downstream).
        With `delay` (seconds) or `not_before` (an aware datetime) the command waits on the
        broker and reaches its queue only then (`framework.publish.scheduling`).
        """
        require_kind(command, command=True, verb="send")
        refuse_direct_publish("send")
        key = idempotency_key or new_key()
        schedule = (  # no coroutine on the hot path when nothing is scheduled
            None
            if delay is None and not_before is None
            else await self._schedule(delay, not_before)
        )
        load = self.load if schedule is None else None  # a forecast is of now, not of later
        fields = (correlation_id, causation_id, deadline, ttl, traceparent, timeout, schedule)
        if retry is None and load is None:  # the hot path: no closure
            return await self._emit(command, key, *fields)

        async def attempt() -> str:
            if load is not None:  # shed_by_forecast: predicted to miss its deadline?
                load.refuse_if_late(command.type_name, key, deadline, ttl)
            return await self._emit(command, key, *fields)

        return await attempt() if retry is None else await retry.call(attempt)

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
        schedule: float | None = None,
    ) -> str:
        key = key or new_key()
        fields = (key, correlation_id, causation_id, deadline, ttl)
        if self.tracing is None:
            envelope, expiration = self._envelope(message, *fields, traceparent)
            await self._publish(message, envelope, expiration, timeout, schedule)
            return key
        with self.tracing.producing(message, key, correlation_id, traceparent) as trace:
            envelope, expiration = self._envelope(message, *fields, *trace.headers)
            await self._publish(message, envelope, expiration, timeout, schedule)
        return key

    def _publish(
        self,
        message: Message,
        envelope: Envelope,
        expiration: int | None,
        timeout: float | None,
        schedule: float | None = None,
    ) -> Awaitable[None]:
        """The port's confirmed publish itself (no coroutine of its own on the hot path),
        recorded once confirmed when the bus records (the in-memory bus); a scheduled
        command goes through the countdown (`framework.publish.scheduling`)."""
        command = is_command(type(message))
        envelope, exchange = scheduled(
            envelope, names.COMMANDS_EXCHANGE if command else names.EVENTS_EXCHANGE, schedule
        )
        confirmed = self.port.publish(
            envelope,
            exchange,
            message.type_name,
            expiration_ms=expiration,
            mandatory=command,
            timeout=timeout,
        )
        record = self._on_published
        return confirmed if record is None else _then(confirmed, record, message, envelope)

    async def _schedule(self, delay: float | None, not_before: datetime | None) -> float | None:
        """The delay `send` was asked for (None: now); declares the countdown the first time."""
        seconds = requested_delay(delay, not_before, time.time())
        if seconds is not None and SCHEDULE not in self._declared:
            await self._apply(SCHEDULE)
            if SCHEDULE not in self._declared:  # concurrent first sends declared it too
                self._declared.append(SCHEDULE)
        return seconds

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
        key = idempotency_key or new_key()
        fields = (key, correlation_id, None, None, timeout)
        if self.tracing is None:
            envelope, expiration = self._envelope(command, *fields, None)
            return await self._request(command, envelope, expiration, timeout, reply_type)
        # the span lasts until the reply (or the timeout): the request's round trip
        with self.tracing.producing(command, key, correlation_id, None) as trace:
            envelope, expiration = self._envelope(command, *fields, *trace.headers)
            return await self._request(command, envelope, expiration, timeout, reply_type)

    async def _request(
        self,
        command: Command,
        envelope: Envelope,
        expiration: int | None,
        timeout: float,
        reply_type: type[M] | None,
    ) -> Any:
        record = self._on_published
        return await self.port.request(
            envelope,
            command.type_name,
            expiration_ms=expiration,
            timeout=timeout,
            reply_type=reply_type,
            on_sent=None if record is None else lambda: record(command, envelope),
        )


async def _then(
    confirmed: Awaitable[None],
    record: Callable[[Message, Envelope], None],
    message: Message,
    envelope: Envelope,
) -> None:
    await confirmed
    record(message, envelope)


def _is_store(arg: IdempotencyStore | str | None) -> bool:
    return arg is not None and not isinstance(arg, str)
