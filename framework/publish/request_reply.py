"""Request/reply over RabbitMQ direct reply-to, correlated by request message_id.

Requests are published on the same channel that consumes `amq.rabbitmq.reply-to` (the
broker requires it): a `Publisher` of their own, which consumes the replies on every
channel it opens. So a request has the publish path of `Bus.send`: confirmed, bounded by
the publish timeout, retried on a fresh channel after a reconnect. A reply that arrives
after its request timed out is discarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pamqp.commands import Basic
from pydantic import BaseModel

from framework.errors import Unroutable
from framework.publish.reply import (
    PendingReplies,
    decode_reply,
    request_timeout,
    unroutable_request,
)
from framework.wire import names
from framework.wire.publisher import Publisher

M = TypeVar("M", bound=BaseModel)


class RequestClient:
    """Owns the reply channel (through its publisher) and the futures of requests in flight."""

    def __init__(self, connection: AbstractRobustConnection, publish_timeout: float) -> None:
        self._pending = PendingReplies()
        self._publisher = Publisher(connection, publish_timeout, prepare=self._consume_replies)

    async def _consume_replies(self, channel: AbstractChannel) -> None:
        queue = await channel.get_queue(names.DIRECT_REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def request(
        self,
        message: aio_pika.Message,
        routing_key: str,
        timeout: float,
        reply_type: type[M] | None,
    ) -> Any:
        """Publish `message` as a request and wait up to `timeout` for its reply."""
        message.reply_to = names.DIRECT_REPLY_TO
        return await self.request_properties(
            message.body, message.properties, routing_key, timeout, reply_type
        )

    async def request_properties(
        self,
        body: bytes,
        properties: Basic.Properties,
        routing_key: str,
        timeout: float,
        reply_type: type[M] | None,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> Any:
        """`request` for a body and its AMQP properties (`reply_to` set by the caller);
        `on_sent` runs once the request is confirmed."""
        request_id = properties.message_id or ""
        future = self._pending.expect(request_id)
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self._publisher.publish_properties(
                        body, properties, names.COMMANDS_EXCHANGE, routing_key
                    )
                except Unroutable as exc:  # the same text as the in-memory broker's
                    raise unroutable_request(routing_key, request_id) from exc
                if on_sent is not None:
                    on_sent()
                body, status = await future
        except TimeoutError as exc:
            raise request_timeout(routing_key, request_id, timeout) from exc
        finally:
            self._pending.forget(request_id)
        return decode_reply(body, status, reply_type)

    async def _on_reply(self, incoming: AbstractIncomingMessage) -> None:
        self._pending.deliver(incoming.headers or {}, incoming.body)

    async def close(self) -> None:
        self._pending.cancel_all()
        await self._publisher.close()
