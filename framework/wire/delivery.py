"""One delivery as the worker sees it, whichever bus it came from.

`Incoming` is the part of aio-pika's IncomingMessage the framework uses. `Delivery` is the
light version built straight from aiormq's `DeliveredMessage`: the consume hot path skips
aio-pika's IncomingMessage (its property copying and locking cost more than the handler
of a small message). `framework.testing.MemoryDelivery` has the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import aiormq
from aiormq.abc import DeliveredMessage

from framework.wire.port import SettleChannel


class Incoming(Protocol):
    """What the worker reads from a delivery and how it settles it."""

    @property
    def body(self) -> bytes: ...
    @property
    def delivery_tag(self) -> int | None: ...
    @property
    def channel(self) -> SettleChannel: ...
    @property
    def redelivered(self) -> bool | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...

    async def ack(self, multiple: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class Delivery:
    """A delivery from an aiormq channel, settled on that same channel."""

    __slots__ = (
        "app_id",
        "body",
        "channel",
        "correlation_id",
        "delivery_tag",
        "headers",
        "message_id",
        "redelivered",
        "reply_to",
        "timestamp",
        "type",
    )

    def __init__(self, message: DeliveredMessage) -> None:
        props = message.header.properties
        delivery = message.delivery
        self.body: bytes = message.body
        self.delivery_tag: int | None = getattr(delivery, "delivery_tag", None)
        self.channel: aiormq.abc.AbstractChannel = message.channel
        self.redelivered: bool | None = getattr(delivery, "redelivered", None)
        self.message_id: str | None = props.message_id
        self.correlation_id: str | None = props.correlation_id
        self.type: str | None = props.message_type
        self.app_id: str | None = props.app_id
        self.reply_to: str | None = props.reply_to
        self.timestamp: datetime | None = props.timestamp
        self.headers: Mapping[str, Any] = props.headers or {}

    async def ack(self, multiple: bool = False) -> None:
        if self.delivery_tag is not None:
            await self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        if self.delivery_tag is not None:
            await self.channel.basic_nack(self.delivery_tag, multiple=multiple, requeue=requeue)
