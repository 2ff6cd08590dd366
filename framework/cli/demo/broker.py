"""Finding a RabbitMQ for the demo: the configured URL, else localhost, else a container."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from framework.errors import BrokerUnavailable
from framework.settings import DEFAULT_AMQP_URL
from framework.wire.connection import broker_answers
from framework.wire.urls import mask_url

HOW_TO_GET_RABBITMQ = (
    "the demo needs RabbitMQ and found none. {tried} Start one with Docker: "
    "`docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3.13-management` "
    "(or `docker compose -f deploy/docker-compose.yml up -d rabbitmq`), or install it from "
    "https://www.rabbitmq.com/docs/download, then run `make demo` again; to use a broker "
    "elsewhere set AMQP_URL=amqp://user:password@host:5672/ or pass --url."
)


@contextlib.asynccontextmanager
async def demo_broker(url: str) -> AsyncIterator[tuple[str, str]]:
    """Yield (url, where it came from); a started container lives for the block."""
    explicit = url != DEFAULT_AMQP_URL
    if await broker_answers(url):
        yield url, "configured" if explicit else "localhost"
        return
    if explicit:
        raise BrokerUnavailable(
            HOW_TO_GET_RABBITMQ.format(
                tried=f"Nothing answered at {mask_url(url)} (from --url or AMQP_URL)."
            )
        )
    tried = f"Nothing answered at {mask_url(url)}"
    try:
        from testcontainers.rabbitmq import RabbitMqContainer
    except ImportError:
        raise BrokerUnavailable(
            HOW_TO_GET_RABBITMQ.format(tried=f"{tried}, and testcontainers is not installed.")
        ) from None
    container = RabbitMqContainer("rabbitmq:3.13-management")
    try:
        await asyncio.to_thread(container.start)
    except Exception as exc:  # noqa: BLE001 - any Docker failure: one clear error
        raise BrokerUnavailable(
            HOW_TO_GET_RABBITMQ.format(
                tried=f"{tried}, and Docker could not start a container ({type(exc).__name__})."
            )
        ) from None
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        yield (f"amqp://{container.username}:{container.password}@{host}:{port}/", "testcontainers")
    finally:
        await asyncio.to_thread(container.stop)
