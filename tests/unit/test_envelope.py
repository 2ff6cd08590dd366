"""The envelope codec: AMQP properties and fw- headers in both directions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from framework import Command, InvalidMessage, names
from framework.envelope import Envelope, decode_body, encode_body, from_amqp, to_amqp


class PlaceOrder(Command):
    type_name = "tests.envelope.PlaceOrder"
    order_id: str
    amount_cents: int


def _incoming(message: aio_pika.Message) -> aio_pika.IncomingMessage:
    props = message.properties
    delivered = DeliveredMessage(
        delivery=spec.Basic.Deliver(delivery_tag=7, routing_key="q"),
        header=ContentHeader(properties=props),
        body=message.body,
        channel=None,  # type: ignore[arg-type]
    )
    return aio_pika.IncomingMessage(delivered, no_ack=True)


def test_round_trip_keeps_identity_and_headers() -> None:
    """to_amqp then from_amqp gives back the same envelope fields."""
    env = Envelope(message_id="k1", type=PlaceOrder.type_name,
                   body=encode_body(PlaceOrder(order_id="1", amount_cents=5)),
                   correlation_id="c1", causation_id="p1", attempt=3, deadline_ms=123,
                   timestamp=datetime(2026, 1, 1, tzinfo=UTC), app_id="svc",
                   traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", headers={"x": "y"})
    amqp = to_amqp(env)
    assert amqp.message_id == "k1" and amqp.correlation_id == "c1"
    assert amqp.content_type == "application/json"
    assert amqp.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert amqp.headers[names.ATTEMPT] == 3 and amqp.headers[names.DEADLINE] == 123
    back = from_amqp(_incoming(amqp))
    assert back == env


def test_expiration_is_set_in_milliseconds() -> None:
    """A deadline's expiration reaches AMQP as milliseconds."""
    amqp = to_amqp(Envelope("k", "t", b"{}", "c"), expiration_ms=1500)
    assert amqp.properties.expiration == "1500"


def test_garbage_headers_fall_back_to_defaults() -> None:
    """A raw message with no id, no type and nonsense headers is still readable."""
    raw = aio_pika.Message(b"x", headers={names.ATTEMPT: "many", names.DEADLINE: True})
    env = from_amqp(_incoming(raw))
    assert env.message_id == "no-id-7" and env.attempt == 1 and env.deadline_ms is None
    assert env.correlation_id == env.message_id


def _env(body: bytes, type_name: str = PlaceOrder.type_name) -> Envelope:
    return Envelope(message_id="k", type=type_name, body=body, correlation_id="c")


@pytest.mark.parametrize(("body", "type_name", "fragment"), [
    (b"{nope", PlaceOrder.type_name, "not valid JSON"),
    (b'{"order_id": "1"}', PlaceOrder.type_name, "amount_cents"),
    (b'{"order_id": "1", "amount_cents": 1}', "other.Type", "unknown message type"),
])
def test_decode_rejects_with_reason(body: bytes, type_name: str, fragment: str) -> None:
    """Decoding problems are InvalidMessage errors saying what is wrong."""
    with pytest.raises(InvalidMessage, match=fragment):
        decode_body(_env(body, type_name), PlaceOrder)


def test_decode_valid_body() -> None:
    """A valid body becomes the model."""
    message: Any = decode_body(_env(b'{"order_id": "1", "amount_cents": 2}'), PlaceOrder)
    assert message == PlaceOrder(order_id="1", amount_cents=2)



def test_encode_body_is_model_dump_json() -> None:
    """The fast serialiser writes exactly what `model_dump_json` writes."""
    from pydantic import Field

    class Rich(Command):
        type_name = "tests.envelope.Rich"
        when: datetime
        aliased: int = Field(alias="aliasedName")
        tags: list[str] = Field(default_factory=list)
        note: str | None = None

    message = Rich(when=datetime(2026, 11, 27, tzinfo=UTC), aliasedName=3, tags=["ü"])
    assert encode_body(message) == message.model_dump_json().encode()
