"""A request is published like a send: confirmed, retried after a lost channel, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from framework.errors import RequestTimeout
from framework.publish.request_reply import RequestClient
from framework.wire import names


class ReplyQueue:
    def __init__(self) -> None:
        self.callback: Any = None

    async def consume(self, callback: Any, no_ack: bool = False) -> str:
        self.callback = callback
        return "ctag"


class Reply:
    def __init__(self, request_id: str) -> None:
        self.headers = {names.IN_REPLY_TO: request_id}
        self.body = b'"pong"'


class FakeChannel:
    """A confirming channel with its reply consumer; `cut`: its first publish finds the
    connection gone (as aiormq reports it), and the channel with it."""

    def __init__(self, cut: bool, published: list[tuple[str, str]]) -> None:
        self.cut = cut
        self.published = published
        self.is_closed = False
        self.replies = ReplyQueue()

    async def get_queue(self, name: str, ensure: bool = True) -> ReplyQueue:
        assert name == names.DIRECT_REPLY_TO
        return self.replies

    async def get_underlay_channel(self) -> FakeChannel:
        return self

    async def basic_publish(self, body: bytes, **kwargs: Any) -> None:
        if self.cut:
            self.is_closed = True
            raise ConnectionError("connection reset by peer")
        properties = kwargs["properties"]
        assert properties.reply_to == names.DIRECT_REPLY_TO
        self.published.append((kwargs["exchange"], kwargs["routing_key"]))
        reply = Reply(properties.message_id)
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.replies.callback(reply))
        )

    async def close(self) -> None:
        self.is_closed = True


class Reconnecting:
    """Hands out a cut channel first, then healthy ones (a reconnect in between)."""

    def __init__(self, cuts: int = 1) -> None:
        self.cuts = cuts
        self.opened: list[FakeChannel] = []
        self.published: list[tuple[str, str]] = []

    async def channel(self, **kwargs: Any) -> FakeChannel:
        assert kwargs == {"publisher_confirms": True, "on_return_raises": True}
        channel = FakeChannel(len(self.opened) < self.cuts, self.published)
        self.opened.append(channel)
        return channel


def request_message() -> aio_pika.Message:
    return aio_pika.Message(b"{}", message_id="req-1", type="tests.Ping")


async def test_request_cut_by_a_reconnect_is_published_again_and_answered() -> None:
    """The first channel dies under the publish: the request goes out on a new channel,
    whose reply consumer gets the answer."""
    connection = Reconnecting(cuts=1)
    client = RequestClient(connection, publish_timeout=5.0)  # type: ignore[arg-type]
    try:
        reply = await client.request(request_message(), "tests.Ping", timeout=5.0, reply_type=None)
    finally:
        await client.close()
    assert reply == "pong"
    assert len(connection.opened) == 2
    assert connection.published == [(names.COMMANDS_EXCHANGE, "tests.Ping")]
    assert all(c.replies.callback is not None for c in connection.opened)


async def test_request_publish_never_confirmed_is_a_request_timeout() -> None:
    """A broker that never takes the request: the request's own timeout still applies."""
    connection = Reconnecting(cuts=10_000)
    client = RequestClient(connection, publish_timeout=5.0)  # type: ignore[arg-type]
    try:
        with pytest.raises(RequestTimeout, match=r"no reply to tests\.Ping req-1"):
            await client.request(request_message(), "tests.Ping", timeout=0.3, reply_type=None)
    finally:
        await client.close()
