"""The envelope: how a message maps onto AMQP properties and `fw-` headers. JSON only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import aio_pika
from pydantic import ValidationError

from framework import names
from framework.amqp_properties import FastProperties
from framework.delivery import Incoming
from framework.errors import InvalidMessage
from framework.messages import Message

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


@dataclass(slots=True)
class Envelope:
    """Everything the framework reads from or writes to one AMQP message.

    Treat it as immutable (derive new ones with `dataclasses.replace`). It is not declared
    frozen only because a frozen dataclass costs a microsecond more to build, and one is
    built for every message sent and every delivery.
    """

    message_id: str
    type: str
    body: bytes
    correlation_id: str
    causation_id: str | None = None
    attempt: int = 1
    deadline_ms: int | None = None
    timestamp: datetime | None = None
    app_id: str | None = None
    traceparent: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


def encode_body(message: Message) -> bytes:
    """Serialise a message to JSON bytes (`model_dump_json` without the str round trip)."""
    return message.__pydantic_serializer__.to_json(message)


def decode_body(envelope: Envelope, cls: type[Message]) -> Message:
    """Validate the envelope's body as `cls`; any problem is an `InvalidMessage`."""
    if envelope.type != cls.type_name:
        raise InvalidMessage(
            f"unknown message type {envelope.type!r} on a queue that handles {cls.type_name!r}"
        )
    try:
        return cls.model_validate_json(envelope.body)
    except ValidationError as exc:
        if _is_json(envelope.body):
            raise InvalidMessage(f"schema invalid for {cls.type_name}: {_summary(exc)}") from exc
        raise InvalidMessage(f"body is not valid JSON: {_summary(exc)}") from exc


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def to_amqp(envelope: Envelope, *, expiration_ms: int | None = None) -> aio_pika.Message:
    """Build the persistent AMQP message for an envelope."""
    return aio_pika.Message(
        body=envelope.body,
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
        type=envelope.type,
        content_type=names.CONTENT_TYPE,
        timestamp=envelope.timestamp or datetime.now(UTC),
        app_id=envelope.app_id,
        reply_to=envelope.reply_to,
        headers=_headers(envelope),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        expiration=None if expiration_ms is None else max(expiration_ms, 1) / 1000,
    )


def amqp_properties(envelope: Envelope, *, expiration_ms: int | None = None) -> FastProperties:
    """The same properties as `to_amqp(envelope).properties`, built directly: the publish
    hot path skips `aio_pika.Message` (and its rounding of the expiration to seconds)."""
    return FastProperties(
        content_type=names.CONTENT_TYPE,
        headers=_headers(envelope),
        delivery_mode=PERSISTENT,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        expiration=None if expiration_ms is None else str(max(expiration_ms, 1)),
        message_id=envelope.message_id,
        timestamp=envelope.timestamp or datetime.now(UTC),
        message_type=envelope.type,
        app_id=envelope.app_id,
    )


def _headers(envelope: Envelope) -> dict[str, Any]:
    headers: dict[str, Any] = dict(envelope.headers)
    headers[names.ATTEMPT] = envelope.attempt
    if envelope.causation_id is not None:
        headers[names.CAUSATION_ID] = envelope.causation_id
    if envelope.deadline_ms is not None:
        headers[names.DEADLINE] = envelope.deadline_ms
    if envelope.traceparent is not None:
        headers[names.TRACEPARENT] = envelope.traceparent
    return headers


_OWN_HEADERS = frozenset({names.ATTEMPT, names.CAUSATION_ID, names.DEADLINE, names.TRACEPARENT})


def from_amqp(incoming: Incoming) -> Envelope:
    """Read an incoming message without ever failing: bad headers fall back to defaults."""
    headers = incoming.headers or _NO_HEADERS
    timestamp = incoming.timestamp
    if timestamp is not None and timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    message_id = incoming.message_id or f"no-id-{incoming.delivery_tag}"
    return Envelope(
        message_id=message_id,
        type=incoming.type or "",
        body=incoming.body,
        correlation_id=incoming.correlation_id or message_id,
        causation_id=_text(headers.get(names.CAUSATION_ID)),
        attempt=max(_int(headers.get(names.ATTEMPT)) or 1, 1),
        deadline_ms=_int(headers.get(names.DEADLINE)),
        timestamp=timestamp,
        app_id=incoming.app_id,
        traceparent=_text(headers.get(names.TRACEPARENT)),
        reply_to=incoming.reply_to,
        headers=(_NO_HEADERS if headers.keys() <= _OWN_HEADERS
                 else {k: v for k, v in headers.items() if k not in _OWN_HEADERS}),
    )


_NO_HEADERS: Mapping[str, Any] = MappingProxyType({})


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None
