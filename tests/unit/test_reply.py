"""Reply encoding and decoding (pure)."""

from __future__ import annotations

import pytest

from framework import Event
from framework.consume.decisions import DeadLetter, Reason
from framework.errors import RemoteError
from framework.publish.reply import decode_reply, error_reply_message, may_reply_to, reply_message
from framework.wire import names


class Price(Event):
    type_name = "tests.reply.Price"
    cents: int


def test_model_reply_round_trip() -> None:
    """A pydantic result comes back as the reply type."""
    message = reply_message("req-1", "corr", Price(cents=5))
    assert message.headers[names.IN_REPLY_TO] == "req-1"
    assert message.type == "tests.reply.Price"
    assert decode_reply(message.body, "ok", Price) == Price(cents=5)


def test_plain_json_reply() -> None:
    """Any JSON-serialisable result is allowed; without reply_type it comes back as JSON."""
    message = reply_message("req-2", "corr", {"a": [1, 2]})
    assert decode_reply(message.body, "ok", None) == {"a": [1, 2]}


def test_error_reply_raises_remote_error() -> None:
    """A terminal failure comes back as RemoteError with reason and error text."""
    message = error_reply_message("r", "c", DeadLetter(Reason.EXHAUSTED, "boom", 5))
    with pytest.raises(RemoteError, match="exhausted") as caught:
        decode_reply(message.body, message.headers[names.REPLY_STATUS], None)
    assert caught.value.error == "boom"


@pytest.mark.parametrize(
    ("reply_to", "allowed"),
    [
        ("amq.rabbitmq.reply-to.g1h2AA==.abc", True),
        ("amq.rabbitmq.reply-to.memory.0a1b", True),
        ("amq.rabbitmq.reply-to", False),
        ("amq.rabbitmq.reply-to.", False),
        ("payments", False),
        ("orders.dlq", False),
        ("amq.rabbitmq.reply-tox", False),
        ("", False),
    ],
)
def test_replies_only_to_direct_reply_to_names(reply_to: str, allowed: bool) -> None:
    """A worker answers only `amq.rabbitmq.reply-to.*`, never an ordinary queue."""
    assert may_reply_to(reply_to) is allowed
