"""The broker's refusals read the same from RabbitMQ's publisher and from the memory broker."""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelNotFoundEntity, DeliveryError, PublishError
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from framework.errors import Overloaded, Unroutable
from framework.testing import MemoryBroker
from framework.testing.memory_broker import StoredMessage
from framework.wire.publisher import Publisher


class RefusingChannel:
    """An aiormq channel whose every publish fails with `error`."""

    is_closed = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        raise self.error

    async def get_underlay_channel(self) -> RefusingChannel:
        return self

    async def close(self) -> None:
        self.is_closed = True


class OneChannelConnection:
    """A connection handing out one channel (the publisher's)."""

    def __init__(self, channel: RefusingChannel) -> None:
        self._channel = channel

    async def channel(self, **kwargs: Any) -> RefusingChannel:
        return self._channel


async def refusal(error: Exception, exchange: str, routing_key: str) -> str:
    """What the RabbitMQ publisher raises when the broker answers a publish with `error`."""
    publisher = Publisher(OneChannelConnection(RefusingChannel(error)), timeout=1.0)  # type: ignore[arg-type]
    message = aio_pika.Message(b"{}", message_id="m-1", type="t.Kind")
    with pytest.raises((Unroutable, Overloaded)) as raised:
        await publisher.publish(message, exchange, routing_key)
    return str(raised.value)


def memory_refusal(broker: MemoryBroker, exchange: str, routing_key: str) -> str:
    message = StoredMessage(b"{}", message_id="m-1", type="t.Kind")
    with pytest.raises((Unroutable, Overloaded)) as raised:
        broker.publish(message, exchange, routing_key)
    return str(raised.value)


async def test_no_queue_bound_reads_the_same_on_both_brokers() -> None:
    """A returned mandatory message is one Unroutable text, in RabbitMQ and in memory."""
    frame = Basic.Return(312, "NO_ROUTE", "", "nowhere")
    returned = PublishError(DeliveredMessage(frame, ContentHeader(), b"{}", None), frame)  # type: ignore[arg-type]
    expected = str(Unroutable.no_queue("t.Kind", "", "nowhere", "m-1"))
    assert await refusal(returned, "", "nowhere") == expected
    assert memory_refusal(MemoryBroker(), "", "nowhere") == expected


async def test_missing_exchange_reads_the_same_on_both_brokers() -> None:
    """Publishing to an exchange nobody declared says to declare the topology first."""
    missing = ChannelNotFoundEntity("NOT_FOUND - no exchange 'fw.gone'")
    rabbit = await refusal(missing, "fw.gone", "t.Kind")
    assert rabbit == str(Unroutable.no_exchange("fw.gone", "t.Kind", "m-1", str(missing)))
    assert memory_refusal(MemoryBroker(), "fw.gone", "t.Kind") == str(
        Unroutable.no_exchange("fw.gone", "t.Kind", "m-1")
    )


async def test_full_queue_reads_the_same_on_both_brokers() -> None:
    """A queue at its max length refuses with one Overloaded text, naming the queue."""
    nacked = DeliveryError(None, Basic.Nack(1))
    broker = MemoryBroker()
    broker.ensure_queue("jobs", {"x-max-length": 0, "x-overflow": "reject-publish"})
    expected = str(Overloaded.queue_full("t.Kind", "m-1", "jobs", "jobs"))
    assert await refusal(nacked, "", "jobs") == expected
    assert memory_refusal(broker, "", "jobs") == expected
