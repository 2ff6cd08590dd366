"""The one place that decides which RabbitMQ tests talk to, plus small admin helpers.

The same order as `framework demo`: `AMQP_URL` when set (CI, developer machines), else a
RabbitMQ answering on localhost, else a throwaway one started with testcontainers (Docker),
else one error naming those three options.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from framework.errors import BrokerUnavailable
from framework.settings import DEFAULT_AMQP_URL
from framework.wire import names
from framework.wire.connection import broker_answers

if TYPE_CHECKING:
    from framework.worker import Worker

RABBITMQ_IMAGE = "rabbitmq:3.13-management"
AMQP_PORT = 5672
READY_LOG_LINE = "Server startup complete"  # RabbitMQ logs this once it accepts connections
DEPRECATED_DECORATOR = r"The @wait_container_is_ready decorator is deprecated"
NO_BROKER = (
    "no RabbitMQ for the tests: {tried}. Either set AMQP_URL=amqp://user:password@host:5672/, "
    f"or start RabbitMQ on localhost ({DEFAULT_AMQP_URL}), or install Docker and "
    "`pip install 'framework[testcontainers]'` so the tests start a throwaway one"
)


def localhost_answers(url: str = DEFAULT_AMQP_URL, timeout: float = 3.0) -> bool:
    """Can an AMQP connection to `url` be opened (and closed) right now? (blocking)"""

    # a thread of its own, so this works whether or not the caller runs an event loop
    with ThreadPoolExecutor(1, thread_name_prefix="amqp-probe") as pool:
        return pool.submit(asyncio.run, broker_answers(url, timeout)).result()


@contextlib.contextmanager
def amqp_url_from_env_or_container(
    env: Mapping[str, str] | None = None,
    probe: Callable[[str], bool] = localhost_answers,
    container: Callable[[], contextlib.AbstractContextManager[str]] | None = None,
) -> Iterator[str]:
    """Yield a broker URL: `AMQP_URL` if set, else RabbitMQ on localhost if it answers, else
    a testcontainers RabbitMQ for the duration; `BrokerUnavailable` if none of them works.

    (`env`, `probe` and `container` replace the environment, the localhost check and the
    container for tests of this choice.)
    """
    url = (os.environ if env is None else env).get("AMQP_URL")
    if url:
        yield url
        return
    if probe(DEFAULT_AMQP_URL):
        yield DEFAULT_AMQP_URL
        return
    with (container or rabbitmq_container)() as started:
        yield started


@contextlib.contextmanager
def rabbitmq_container(
    image: str = RABBITMQ_IMAGE, docker_client_kw: dict[str, Any] | None = None
) -> Iterator[str]:
    """Start a throwaway RabbitMQ with testcontainers, yield its URL, remove it afterwards."""
    tried = f"AMQP_URL is not set and nothing answered at {DEFAULT_AMQP_URL}"
    container = configured_container(image, docker_client_kw, tried=tried)
    failure = _start(container)
    if failure is not None:
        raise BrokerUnavailable(
            NO_BROKER.format(tried=f"{tried}, and Docker could not start {image} ({failure})")
        )
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(AMQP_PORT)
        yield f"amqp://guest:guest@{host}:{port}/"
    finally:
        container.stop()


def configured_container(
    image: str = RABBITMQ_IMAGE,
    docker_client_kw: dict[str, Any] | None = None,
    *,
    tried: str = "AMQP_URL is not set",
) -> Any:
    """The testcontainers container for `image`, configured but not started.

    Uses testcontainers' structured wait strategy: its RabbitMqContainer is built on a
    decorator that warns as deprecated when imported, which `filterwarnings = error` turns
    into an error; only that one warning is ignored, and only while importing.
    """
    try:
        with warnings.catch_warnings():  # releases before 4.15 use that decorator on import
            warnings.filterwarnings("ignore", DEPRECATED_DECORATOR, DeprecationWarning)
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:
        raise BrokerUnavailable(
            NO_BROKER.format(tried=f"{tried}, and testcontainers (>= 4.13) is not installed")
        ) from None
    failure = None
    try:
        container = DockerContainer(image, docker_client_kw=docker_client_kw)
    except Exception as exc:  # noqa: BLE001 - DockerException: no daemon to ask
        failure = _short(exc)
    if failure is not None:
        _collect_quietly()
        raise BrokerUnavailable(
            NO_BROKER.format(tried=f"{tried}, and Docker is not available ({failure})")
        )
    return (
        container.with_exposed_ports(AMQP_PORT)
        .with_env("RABBITMQ_DEFAULT_USER", "guest")
        .with_env("RABBITMQ_DEFAULT_PASS", "guest")
        .waiting_for(LogMessageWaitStrategy(READY_LOG_LINE))
    )


def _start(container: Any) -> str | None:
    """Start `container`; a short description of why it failed, or None."""
    failure = None
    try:
        container.start()
    except Exception as exc:  # noqa: BLE001 - Docker's errors have no common base worth naming here
        failure = _short(exc)
        with contextlib.suppress(Exception):
            container.stop()
    if failure is not None:
        _collect_quietly()
    return failure


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _collect_quietly() -> None:
    # docker-py leaves its unix socket to the garbage collector after a failed request; its
    # ResourceWarning would surface later, in whichever test happens to run then
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


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

    async def consumer_count(self, queue: str) -> int:
        """Consumers subscribed to `queue` (passive declare)."""
        async with self._connection.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.consumer_count or 0

    async def wait_for_consumers(self, queue: str, expected: int, timeout: float = 30.0) -> None:
        """Wait until `queue` has `expected` consumers (raises `TimeoutError` after `timeout`),
        e.g. to know a paused worker's subscription is gone."""
        async with asyncio.timeout(timeout):
            # the broker pushes no consumer events to a non-consumer: polling is the only way
            while await self.consumer_count(queue) != expected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def wait_for_depth(self, queue: str, expected: int, timeout: float = 30.0) -> int:
        """Wait until `queue` holds `expected` ready messages; returns the last depth seen."""
        depth = -1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # the broker pushes no depth events to a non-consumer: polling is the only way
                while (depth := await self.depth(queue)) != expected:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        return depth

    async def wait_drained(
        self, worker: Worker, timeout: float = 30.0, interval: float = 0.1
    ) -> None:
        """Wait until `worker` has nothing left: its queue and delay queues are empty, nothing
        is in flight, and its counters stood still for two checks in a row.

        Raises `TimeoutError` with the last state seen. (The real-broker counterpart of
        `MemoryBus.drain`; messages already in the DLQ do not count as pending.)
        """
        spec = worker.spec
        dlq = names.dlq_name(spec.queue)  # its queue (or partitions) and delay queues
        queues = [q.name for q in spec.topology.queues if q.name != dlq]
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

    async def publish_raw(
        self, routing_key: str, body: bytes, *, exchange: str = "", **properties: Any
    ) -> None:
        """Publish arbitrary bytes (confirmed), e.g. to inject malformed messages."""
        async with self._connection.channel(publisher_confirms=True) as channel:
            target = (
                channel.default_exchange
                if exchange == ""
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
                taken.append(
                    DrainedMessage(
                        body=incoming.body,
                        message_id=incoming.message_id,
                        type=incoming.type,
                        headers=dict(incoming.headers or {}),
                        correlation_id=incoming.correlation_id,
                    )
                )
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
