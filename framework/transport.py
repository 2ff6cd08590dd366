"""The seam between a Worker and the bus it runs on: what a worker needs, as protocols.

`Bus` (RabbitMQ) and `framework.testing.MemoryBus` (in-process) both satisfy `Transport`,
so the same Worker subclasses run unchanged on either. Only static typing uses these.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import aio_pika
from aio_pika.abc import AbstractChannel
from pydantic import SecretStr

from framework.idempotency import IdempotencyStore
from framework.messages import Command, Event
from framework.settings import Settings

if TYPE_CHECKING:
    from framework.spans import Tracing
    from framework.worker import Worker


class MessagePublisher(Protocol):
    """Publishes one AMQP message and returns once it is confirmed (or raises)."""

    async def publish(
        self,
        message: aio_pika.Message,
        exchange: str,
        routing_key: str,
        *,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None: ...


class Transport(Protocol):
    """What `Worker` and `Context` use of a bus."""

    settings: Settings
    service: str
    tracing: Tracing | None  # OpenTelemetry spans (framework.tracing.open_tracing), if on

    @property
    def publisher(self) -> MessagePublisher: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    @property
    def idempotency_url(self) -> SecretStr | None: ...

    async def consumer_count(self, queue: str) -> int | None: ...

    async def consume_channel(self, prefetch: int) -> AbstractChannel: ...

    async def declare(self, worker: type[Worker]) -> None: ...

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
        delay: float | None = None,
        not_before: datetime | None = None,
    ) -> str: ...

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
    ) -> str: ...
