"""The envelope codec: AMQP properties and fw- headers in both directions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from framework import Command, InvalidMessage
from framework.consume.decisions import DeadLetter, Reason, Retry
from framework.consume.settle import dead_letter_copy, retry_copy
from framework.wire import names
from framework.wire.envelope import (
    MAX_DEADLINE_MS,
    Envelope,
    amqp_properties,
    decode_body,
    encode_body,
    from_amqp,
)
from framework.wire.keys import CONTENT_KEY_PREFIX, content_key


class PlaceOrder(Command):
    type_name = "tests.envelope.PlaceOrder"
    order_id: str
    amount_cents: int


def _incoming(message: aio_pika.Message) -> aio_pika.IncomingMessage:
    return _delivered(message.body, message.properties)


def _delivered(body: bytes, props: spec.Basic.Properties) -> aio_pika.IncomingMessage:
    delivered = DeliveredMessage(
        delivery=spec.Basic.Deliver(delivery_tag=7, routing_key="q"),
        header=ContentHeader(properties=props),
        body=body,
        channel=None,  # type: ignore[arg-type]
    )
    return aio_pika.IncomingMessage(delivered, no_ack=True)


def test_round_trip_keeps_identity_and_headers() -> None:
    """amqp_properties then from_amqp gives back the same envelope fields."""
    env = Envelope(
        message_id="k1",
        type=PlaceOrder.type_name,
        body=encode_body(PlaceOrder(order_id="1", amount_cents=5)),
        correlation_id="c1",
        causation_id="p1",
        attempt=3,
        deadline_ms=123,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        app_id="svc",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        headers={"x": "y"},
    )
    amqp = amqp_properties(env)
    assert amqp.message_id == "k1" and amqp.correlation_id == "c1"
    assert amqp.content_type == "application/json"
    assert amqp.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert amqp.headers is not None
    assert amqp.headers[names.ATTEMPT] == 3 and amqp.headers[names.DEADLINE] == 123
    back = from_amqp(_delivered(env.body, amqp))
    assert back == env


def test_expiration_is_set_in_milliseconds() -> None:
    """A deadline's expiration reaches AMQP as milliseconds."""
    amqp = amqp_properties(Envelope("k", "t", b"{}", "c"), expiration_ms=1500)
    assert amqp.expiration == "1500"


def test_garbage_headers_fall_back_to_defaults() -> None:
    """A raw message with no id, no type and nonsense headers is still readable."""
    raw = aio_pika.Message(b"x", headers={names.ATTEMPT: "many", names.DEADLINE: True})
    env = from_amqp(_incoming(raw))
    assert env.message_id.startswith(CONTENT_KEY_PREFIX)
    assert env.attempt == 1 and env.deadline_ms is None
    assert env.correlation_id == env.message_id


def test_keyless_delivery_is_invalid_under_a_content_key() -> None:
    """No message_id: invalid (sender told to set it), keyed by content, never by delivery tag."""
    env = from_amqp(_incoming(aio_pika.Message(b'{"a": 1}', type="t")))
    assert env.invalid is not None and "message_id" in env.invalid
    assert env.message_id == content_key("t", b'{"a": 1}')
    assert env.headers[names.KEY_ORIGIN] == "content"


def test_keyless_keys_do_not_depend_on_the_delivery_tag() -> None:
    """Different bodies get different keys, the same body the same key, on any channel."""
    first = from_amqp(_incoming(aio_pika.Message(b'{"n": 1}', type="t")))
    second = from_amqp(_incoming(aio_pika.Message(b'{"n": 2}', type="t")))
    again = from_amqp(_incoming(aio_pika.Message(b'{"n": 1}', type="t")))
    assert first.message_id != second.message_id
    assert first.message_id == again.message_id
    assert content_key("a", b"bc") != content_key("ab", b"c")


def test_keyless_content_opt_in_is_valid() -> None:
    """With keyless="content" a delivery without message_id is handled under its content key."""
    env = from_amqp(_incoming(aio_pika.Message(b"{}", type="t")), keyless="content")
    assert env.invalid is None and env.message_id == content_key("t", b"{}")


def test_sender_key_is_kept() -> None:
    """A delivery with a message_id keeps it and gets no key-origin header."""
    env = from_amqp(_incoming(aio_pika.Message(b"{}", message_id="mine")))
    assert env.message_id == "mine" and env.invalid is None
    assert names.KEY_ORIGIN not in env.headers


@pytest.mark.parametrize(
    "attempt", [2**62, 2**63, 2**64, "18446744073709551616", 0, -3, True, "many", 6]
)
def test_out_of_range_attempt_counts_as_first(attempt: Any) -> None:
    """An fw-attempt that is not an integer in 1..max_attempt is ignored (attempt 1, noted)."""
    raw = aio_pika.Message(b"{}", message_id="k", headers={names.ATTEMPT: "x"})
    raw.headers[names.ATTEMPT] = attempt  # bypass aio-pika's own header checks
    env = from_amqp(_incoming(raw), max_attempt=5)
    assert env.attempt == 1 and env.invalid is None
    assert len(env.ignored) == 1 and names.ATTEMPT in env.ignored[0]


def test_in_range_attempt_is_kept() -> None:
    """An fw-attempt within 1..max_attempt is the attempt number."""
    raw = aio_pika.Message(b"{}", message_id="k", headers={names.ATTEMPT: 5})
    env = from_amqp(_incoming(raw), max_attempt=5)
    assert env.attempt == 5 and env.ignored == ()


@pytest.mark.parametrize(
    "deadline", [2**63, 2**64, "18446744073709551616", -1, MAX_DEADLINE_MS + 1, "soon"]
)
def test_unusable_deadline_is_invalid(deadline: Any) -> None:
    """An fw-deadline that is no epoch-ms time in 1970..9999 makes the delivery invalid."""
    raw = aio_pika.Message(b"{}", message_id="k", headers={names.DEADLINE: 1})
    raw.headers[names.DEADLINE] = deadline
    env = from_amqp(_incoming(raw))
    assert env.deadline_ms is None
    assert env.invalid is not None and names.DEADLINE in env.invalid


def test_copies_of_forged_headers_encode() -> None:
    """Retry and DLQ copies of a delivery with forged headers encode (no TypeError)."""
    raw = aio_pika.Message(b"{}", message_id="k", headers={})
    raw.headers.update(
        {
            names.ATTEMPT: 2**64,
            names.DEADLINE: 2**64,
            "big": 2**70,
            "raw": b"\xff\xfe",
            "deep": {"a": [{"b": b"\xff"}]},
        }
    )
    env = from_amqp(_incoming(raw))
    retry = Retry(delay_ms=10, tier_ms=10, next_attempt=env.attempt + 1, error="e" * 200_000)
    dead = DeadLetter(Reason.INVALID, env.invalid or "", env.attempt)
    for properties in (
        amqp_properties(dead_letter_copy(env, dead, "q")),
        amqp_properties(retry_copy(env, retry), expiration_ms=retry.delay_ms),
    ):
        encoded = properties.marshal()
        assert len(encoded) < 4096


def _env(body: bytes, type_name: str = PlaceOrder.type_name) -> Envelope:
    return Envelope(message_id="k", type=type_name, body=body, correlation_id="c")


@pytest.mark.parametrize(
    ("body", "type_name", "fragment"),
    [
        (b"{nope", PlaceOrder.type_name, "not valid JSON"),
        (b'{"order_id": "1"}', PlaceOrder.type_name, "amount_cents"),
        (b'{"order_id": "1", "amount_cents": 1}', "other.Type", "unknown message type"),
    ],
)
def test_decode_rejects_with_reason(body: bytes, type_name: str, fragment: str) -> None:
    """Decoding problems are InvalidMessage errors saying what is wrong."""
    with pytest.raises(InvalidMessage, match=fragment):
        decode_body(_env(body, type_name), PlaceOrder)


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"order_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"]
)
def test_deeply_nested_json_is_invalid(body: bytes) -> None:
    """A deeply nested JSON body is InvalidMessage (never a RecursionError, never retried)."""
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        decode_body(_env(body), PlaceOrder)


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


def test_overlong_causation_and_trace_ids_are_dropped() -> None:
    """A 100 KB fw-causation-id or traceparent is dropped (noted), never propagated."""
    raw = aio_pika.Message(
        b"{}",
        message_id="k",
        headers={
            names.CAUSATION_ID: "c" * 100_000,
            names.TRACEPARENT: "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        },
    )
    env = from_amqp(_incoming(raw))
    assert env.causation_id is None and env.traceparent is not None
    assert len(env.ignored) == 1 and names.CAUSATION_ID in env.ignored[0]
