"""The consumer keeps its subscription: a reopened channel or a broker cancel asks for a
new one while consuming is wanted, never while paused; a failed attempt asks again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from framework.wire.consumer import Consumer
from framework.wire.topology import QueueSpec


class FakeRaw:
    """The aiormq channel: basic_consume / basic_cancel, consumer-cancel callbacks."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.is_closed = False
        self.consumed: list[str] = []
        self.cancelled: list[str] = []
        self.on_consumer_cancel_callbacks: set[Any] = set()

    async def basic_consume(
        self, queue: str, callback: Any, no_ack: bool, arguments: Any = None
    ) -> Any:
        if self.fail:
            raise ConnectionError("connection lost again")
        tag = f"ctag-{len(self.consumed) + 1}"
        self.consumed.append(queue)
        return SimpleNamespace(consumer_tag=tag)

    async def basic_cancel(self, tag: str) -> None:
        self.cancelled.append(tag)


class Callbacks(list[Any]):
    """aio-pika's CallbackCollection, as far as the consumer uses it."""

    def add(self, callback: Any) -> None:
        self.append(callback)


class FakeRobustChannel:
    """aio-pika's robust channel: QoS, queue declaration, the underlay, reopen callbacks."""

    def __init__(self) -> None:
        self.raw = FakeRaw()
        self.reopen_callbacks = Callbacks()
        self.qos: list[int] = []

    async def set_qos(self, prefetch_count: int) -> None:
        self.qos.append(prefetch_count)

    async def declare_queue(self, name: str, **_: Any) -> Any:
        return SimpleNamespace(name=name)

    async def get_underlay_channel(self) -> FakeRaw:
        return self.raw

    def reopen(self) -> None:
        self.raw = FakeRaw(fail=self.raw.fail)
        for callback in self.reopen_callbacks:
            callback(self)


async def _nothing(_: Any) -> None:
    return None


def _consumer() -> tuple[Consumer, FakeRobustChannel]:
    channel = FakeRobustChannel()
    return Consumer(channel, QueueSpec("q"), _nothing), channel  # type: ignore[arg-type]


async def test_reopened_channel_asks_for_a_new_subscription_and_gets_it() -> None:
    consumer, channel = _consumer()
    await consumer.start(16)
    assert consumer.consuming and channel.raw.consumed == ["q"]
    channel.reopen()
    assert consumer.resubscribe_needed.is_set()
    await consumer.restart()
    assert not consumer.resubscribe_needed.is_set()
    assert channel.raw.consumed == ["q"]  # on the new channel
    assert channel.qos[-1] == 16


async def test_paused_consumer_is_not_resubscribed() -> None:
    consumer, channel = _consumer()
    await consumer.start(16)
    await consumer.pause()
    channel.reopen()
    assert not consumer.resubscribe_needed.is_set()
    await consumer.restart()  # e.g. a cancel that raced with the pause: stays paused
    assert not consumer.consuming and channel.raw.consumed == []


async def test_failed_resubscription_asks_again() -> None:
    consumer, channel = _consumer()
    await consumer.start(8)
    channel.raw.fail = True
    channel.reopen()
    with pytest.raises(ConnectionError):
        await consumer.restart()
    assert consumer.resubscribe_needed.is_set()
    assert not consumer.consuming
    channel.raw.fail = False
    await consumer.restart()
    assert consumer.consuming and channel.raw.consumed == ["q"]


async def test_broker_cancel_of_our_tag_asks_for_a_new_subscription() -> None:
    consumer, channel = _consumer()
    await consumer.start(8)
    (on_cancel,) = channel.raw.on_consumer_cancel_callbacks
    on_cancel(SimpleNamespace(consumer_tag="someone-else"))
    assert not consumer.resubscribe_needed.is_set()
    on_cancel(SimpleNamespace(consumer_tag="ctag-1"))
    assert consumer.resubscribe_needed.is_set()
