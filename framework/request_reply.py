"""Request/reply over RabbitMQ direct reply-to, correlated by request message_id.

Requests are published on the same channel that consumes `amq.rabbitmq.reply-to` (the
broker requires it). A reply that arrives after its request timed out is discarded.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from pydantic import BaseModel

from framework import names
from framework.errors import Overloaded
from framework.reply import PendingReplies, decode_reply, request_timeout, unroutable_request

M = TypeVar("M", bound=BaseModel)


class RequestClient:
    """Owns the reply channel and the futures of requests in flight."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._pending = PendingReplies()
        self._lock = asyncio.Lock()

    async def _ready_channel(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                queue = await channel.get_queue(names.DIRECT_REPLY_TO, ensure=False)
                await queue.consume(self._on_reply, no_ack=True)
                self._channel = channel
            return self._channel

    async def request(
        self,
        message: aio_pika.Message,
        routing_key: str,
        timeout: float,
        reply_type: type[M] | None,
    ) -> Any:
        """Publish `message` as a request and wait up to `timeout` for its reply."""
        request_id = message.message_id or ""
        future = self._pending.expect(request_id)
        try:
            async with asyncio.timeout(timeout):
                channel = await self._ready_channel()
                message.reply_to = names.DIRECT_REPLY_TO
                exchange = await channel.get_exchange(names.COMMANDS_EXCHANGE, ensure=False)
                try:
                    await exchange.publish(message, routing_key, mandatory=True)
                except PublishError as exc:
                    raise unroutable_request(routing_key, request_id) from exc
                except DeliveryError as exc:
                    raise Overloaded(
                        f"the queue for {routing_key!r} is full",
                        routing_key=routing_key,
                        message_id=request_id,
                    ) from exc
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
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
