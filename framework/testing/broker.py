"""The one place that decides which RabbitMQ tests talk to, plus small admin helpers.

`AMQP_URL` wins when set (CI, developer machines); otherwise a throwaway RabbitMQ is
started with testcontainers (needs Docker).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from framework import names
from framework.errors import ConfigurationError

if TYPE_CHECKING:
    from framework.worker import Worker

RABBITMQ_IMAGE = "rabbitmq:3.13-management"


@contextlib.contextmanager
def amqp_url_from_env_or_container() -> Iterator[str]:
    """Yield a broker URL: `AMQP_URL` if set, else a testcontainers RabbitMQ for the duration."""
    url = os.environ.get("AMQP_URL")
    if url:
        yield url
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "AMQP_URL is not set and testcontainers is not installed: "
            "set AMQP_URL or `pip install 'framework[testcontainers]'`"
        ) from exc
    with RabbitMqContainer(RABBITMQ_IMAGE) as container:  # pragma: no cover - needs Docker
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        yield f"amqp://{container.username}:{container.password}@{host}:{port}/"


@dataclass
class DrainedMessage:
    """A message taken off a queue by `BrokerAdmin.drain`."""

    body: bytes
    message_id: str | None
    type: str | None
    headers: dict[str, Any]
    correlation_id: str | None


class BrokerAdmin:
    """Small helpers for tests: depth, raw publish, draining and deleting queues."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str) -> Any:
        connection = await aio_pika.connect_robust(url)
        try:
            yield cls(connection)
        finally:
            await connection.close()

    async def depth(self, queue: str) -> int:
        """Ready messages in `queue` (passive declare)."""
        async with self._connection.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0

    async def wait_for_depth(self, queue: str, expected: int, timeout: float = 30.0) -> int:
        """Wait until `queue` holds `expected` ready messages; returns the last depth seen."""
        depth = -1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # the broker pushes no depth events to a non-consumer: polling is the only way
                while (depth := await self.depth(queue)) != expected:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        return depth

    async def wait_drained(self, worker: Worker, timeout: float = 30.0,
                           interval: float = 0.1) -> None:
        """Wait until `worker` has nothing left: its queue and delay queues are empty, nothing
        is in flight, and its counters stood still for two checks in a row.

        Raises `TimeoutError` with the last state seen. (The real-broker counterpart of
        `MemoryBus.drain`; messages already in the DLQ do not count as pending.)
        """
        spec = worker.spec
        queues = [spec.queue, *(names.retry_queue_name(spec.queue, t)
                                for t in spec.policy.tiers_ms())]
        previous: tuple[Any, ...] | None = None
        quiet = 0
        state: tuple[Any, ...] = ()
        try:
            async with asyncio.timeout(timeout):
                while quiet < 2:  # the broker pushes no depth events: poll
                    depth = sum([await self.depth(q) for q in queues])
                    state = (depth, astuple(worker.stats))
                    idle = depth == 0 and worker.stats.in_flight == 0
                    quiet = quiet + 1 if idle and state == previous else 0
                    previous = state
                    await asyncio.sleep(interval)
        except TimeoutError:
            raise TimeoutError(
                f"{spec.queue} not drained after {timeout:g}s: ready+delayed={state[0]}, "
                f"stats={worker.stats.as_dict()}"
            ) from None

    async def publish_raw(self, routing_key: str, body: bytes, *, exchange: str = "",
                          **properties: Any) -> None:
        """Publish arbitrary bytes (confirmed), e.g. to inject malformed messages."""
        async with self._connection.channel(publisher_confirms=True) as channel:
            target = (
                channel.default_exchange if exchange == ""
                else await channel.get_exchange(exchange, ensure=False)
            )
            properties.setdefault("message_id", f"raw-{os.urandom(6).hex()}")
            await target.publish(aio_pika.Message(body=body, **properties), routing_key)

    async def drain(self, queue: str) -> list[DrainedMessage]:
        """Take every ready message off `queue` (acked), in order."""
        taken: list[DrainedMessage] = []
        async with self._connection.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            while True:
                incoming: AbstractIncomingMessage | None = await declared.get(fail=False)
                if incoming is None:
                    return taken
                taken.append(DrainedMessage(
                    body=incoming.body, message_id=incoming.message_id, type=incoming.type,
                    headers=dict(incoming.headers or {}), correlation_id=incoming.correlation_id,
                ))
                await incoming.ack()

    async def delete_queues(self, *queue_names: str) -> None:
        """Delete queues if they exist (quorum queues need if_unused/if_empty off)."""
        for name in queue_names:
            async with self._connection.channel() as channel:
                with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):
                    await channel.queue_delete(name, if_unused=False, if_empty=False)

    async def delete_worker_queues(self, queue: str, tiers_ms: list[int]) -> None:
        """Delete a worker queue with its DLQ and delay tiers."""
        await self.delete_queues(
            queue, names.dlq_name(queue), *(names.retry_queue_name(queue, t) for t in tiers_ms)
        )
