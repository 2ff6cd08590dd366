"""FastProperties writes exactly the bytes pamqp's Basic.Properties writes."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from pamqp.commands import Basic

from framework.wire import names
from framework.wire.envelope import Envelope, amqp_properties, wire_headers
from framework.wire.properties import FastProperties

FULL: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "headers": {"fw-attempt": 1, "traceparent": "00-abc-def-01", "fw-deadline": 1_800_000_000_000},
    "delivery_mode": 2,
    "priority": 0,
    "correlation_id": "corr-1",
    "reply_to": "amq.rabbitmq.reply-to.g1h2",
    "expiration": "1500",
    "message_id": "k-1",
    "timestamp": datetime(2026, 11, 27, 6, 30, 1, tzinfo=UTC),
    "message_type": "orders.PlaceOrder",
    "user_id": "guest",
    "app_id": "orders",
}


def _same(**fields: Any) -> None:
    """Same bytes, or the same error for a value pamqp refuses."""
    try:
        expected = Basic.Properties(**fields).marshal()
    except TypeError:
        with pytest.raises(TypeError):
            FastProperties(**fields).marshal()
        return
    assert FastProperties(**fields).marshal() == expected


def test_every_field_set() -> None:
    _same(**FULL)


@pytest.mark.parametrize("name", sorted(FULL))
def test_each_field_alone_and_each_left_out(name: str) -> None:
    _same(**{name: FULL[name]})
    _same(**{k: v for k, v in FULL.items() if k != name})


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        127,
        128,
        -128,
        -129,
        32767,
        40000,
        70000,
        2**31,
        2**40,
        -(2**40),
        True,
        False,
        1.5,
        Decimal("1.25"),
        "",
        "ünïcødé",
        None,
        b"",
        [1, "a"],
        {"n": {"m": 1}},
        datetime(2026, 1, 1, tzinfo=UTC),
        bytearray(b"xy"),
    ],
)
def test_header_values_of_every_kind(value: Any) -> None:
    _same(headers={"k": value, "a-string": "s"})


def test_headers_edge_cases() -> None:
    _same(headers={})
    _same(headers={"ключ": "non-ascii key"})
    _same(headers={"k" * 200: "a key pamqp truncates"})
    _same(headers={f"h{i}": i for i in range(50)})


def test_timestamps_naive_aware_and_struct_time() -> None:
    _same(timestamp=datetime(2026, 11, 27, 6, 30, 1))
    _same(timestamp=datetime(2026, 11, 27, 6, 30, 1, tzinfo=timezone(timedelta(hours=5))))
    _same(timestamp=time.gmtime(1_800_000_000))


def test_random_combinations() -> None:
    rng = random.Random(7)
    names = sorted(FULL)
    for _ in range(500):
        chosen = rng.sample(names, rng.randint(0, len(names)))
        _same(**{n: FULL[n] for n in chosen})


def test_too_long_short_string_is_refused_like_pamqp() -> None:
    with pytest.raises(TypeError):
        Basic.Properties(message_id="x" * 256).marshal()
    with pytest.raises(TypeError):
        FastProperties(message_id="x" * 256).marshal()


def test_envelope_properties_match_the_aio_pika_message() -> None:
    """The framework's encoder writes what aio-pika's Message would have written."""
    envelope = Envelope(
        message_id="k-1",
        type="orders.PlaceOrder",
        body=b"{}",
        correlation_id="c-1",
        causation_id="k-0",
        attempt=2,
        deadline_ms=1_800_000_000_000,
        timestamp=datetime(2026, 11, 27, 6, 30, 1, tzinfo=UTC),
        app_id="orders",
        traceparent="00-abc-def-01",
        reply_to="amq.rabbitmq.reply-to.x",
        headers={"custom": "v"},
    )
    fast = amqp_properties(envelope, expiration_ms=1500)
    reference = _aio_pika_message(envelope, expiration_ms=1500).properties
    reference.priority = None  # aio-pika writes priority 0, the same as none
    assert fast.marshal() == reference.marshal()
    assert fast == reference


def _aio_pika_message(envelope: Envelope, *, expiration_ms: int) -> aio_pika.Message:
    """The reference: the same envelope as aio-pika builds it."""
    return aio_pika.Message(
        body=envelope.body,
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
        type=envelope.type,
        content_type=names.CONTENT_TYPE,
        timestamp=envelope.timestamp,
        app_id=envelope.app_id,
        reply_to=envelope.reply_to,
        headers=wire_headers(envelope),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        expiration=expiration_ms / 1000,
    )
