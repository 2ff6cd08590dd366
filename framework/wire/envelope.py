"""The envelope: how a message maps onto AMQP properties and `fw-` headers. JSON only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from pydantic import ValidationError

from framework.errors import InvalidMessage
from framework.messages import Message
from framework.wire import names
from framework.wire.delivery import Incoming
from framework.wire.guard import truncated_headers
from framework.wire.header_values import header_int, header_text
from framework.wire.keys import content_key
from framework.wire.properties import FastProperties

PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker

# What a worker does with a delivery that has no message_id (its `keyless` setting).
Keyless = Literal["reject", "content"]
KEYLESS_MODES: tuple[Keyless, ...] = ("reject", "content")
KEYLESS_ERROR = (
    "message has no message_id: the sender must set the AMQP message_id property to the "
    "message's idempotency key (unique per message, the same on every resend); without it "
    "a duplicate cannot be told from a new message. A worker may opt in to keying such "
    'messages by their content instead: keyless = "content"'
)
# Ranges of the framework's numeric headers; a value outside is never trusted or copied.
MAX_ATTEMPT = 2**31 - 1
MAX_DEADLINE_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last datetime
MAX_ID_LENGTH = 255  # fw-causation-id, traceparent: ids (a message_id is at most 255 bytes)


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
    # found while reading a delivery: why it cannot be handled (dead-lettered as invalid),
    # and headers that were ignored (logged as warnings)
    invalid: str | None = None
    ignored: tuple[str, ...] = ()


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
        if not _is_json_error(exc):
            raise InvalidMessage(f"schema invalid for {cls.type_name}: {_summary(exc)}") from exc
        if "recursion limit" in str(exc):
            raise InvalidMessage(
                "body is JSON nested too deeply to decode (pydantic's JSON parser stops at "
                f"about 200 levels): {_summary(exc)}; flatten the message"
            ) from exc
        raise InvalidMessage(f"body is not valid JSON: {_summary(exc)}") from exc
    except RecursionError as exc:  # a validator of the model recursed: retrying cannot help
        raise InvalidMessage(f"body is nested too deeply to validate as {cls.type_name}") from exc


def _is_json_error(exc: ValidationError) -> bool:
    """True if pydantic failed at parsing the JSON, not at validating it (never re-parses:
    the stdlib parser would raise RecursionError on a deeply nested body)."""
    return any(error["type"] == "json_invalid" for error in exc.errors(include_url=False))


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def amqp_properties(envelope: Envelope, *, expiration_ms: int | None = None) -> FastProperties:
    """The AMQP properties of an envelope: the one encoder of every message the framework
    publishes (sends, events, retry and DLQ copies, requests, replies, replays). Built
    directly, without `aio_pika.Message` (and its rounding of the expiration to seconds):
    the same bytes, tested against aio-pika's encoding."""
    return FastProperties(
        content_type=names.CONTENT_TYPE,
        headers=wire_headers(envelope),
        delivery_mode=PERSISTENT,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        expiration=None if expiration_ms is None else str(max(expiration_ms, 1)),
        message_id=envelope.message_id,
        timestamp=envelope.timestamp or datetime.now(UTC),
        message_type=envelope.type,
        app_id=envelope.app_id,
    )


def wire_headers(envelope: Envelope) -> dict[str, Any]:
    """The header table of an envelope: its headers plus the framework's own `fw-` ones."""
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


def from_amqp(
    incoming: Incoming, *, keyless: Keyless = "reject", max_attempt: int = MAX_ATTEMPT
) -> Envelope:
    """Read an incoming message without ever failing.

    What cannot be trusted is never used: a delivery without `message_id` gets a content
    key (`keys.content_key`) and, unless `keyless="content"`, is marked `invalid` (so it is
    dead-lettered under that key without claiming it); an `fw-deadline` that is not an
    epoch-ms time in 1970..9999 marks it `invalid` (the sender's deadline cannot be
    honoured); an `fw-attempt` that is not an integer in 1..`max_attempt` is ignored
    (attempt 1) and listed in `ignored`; a header table nested too deeply to decode
    (`wire_guard`) marks it `invalid`.
    """
    headers = incoming.headers or _NO_HEADERS
    timestamp = incoming.timestamp
    if timestamp is not None and timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    invalid = truncated_headers(headers)
    ignored: tuple[str, ...] = ()
    attempt = _attempt(headers.get(names.ATTEMPT), max_attempt)
    if attempt is None:
        attempt = 1
        ignored = (
            f"{names.ATTEMPT}={_shown(headers.get(names.ATTEMPT))} is not an integer "
            f"in 1..{max_attempt}: counted as attempt 1",
        )
    deadline_ms, deadline_problem = _deadline(headers)
    invalid = invalid or deadline_problem
    causation_id = header_text(headers.get(names.CAUSATION_ID))
    traceparent = header_text(headers.get(names.TRACEPARENT))
    if len(causation_id or "") > MAX_ID_LENGTH or len(traceparent or "") > MAX_ID_LENGTH:
        # they are copied into everything this delivery leads to: never let them grow
        ignored = (
            *ignored,
            f"{names.CAUSATION_ID} or {names.TRACEPARENT} longer than "
            f"{MAX_ID_LENGTH} characters: dropped",
        )
        causation_id = causation_id if len(causation_id or "") <= MAX_ID_LENGTH else None
        traceparent = traceparent if len(traceparent or "") <= MAX_ID_LENGTH else None
    user_headers = (
        _NO_HEADERS
        if headers.keys() <= _OWN_HEADERS
        else {k: v for k, v in headers.items() if k not in _OWN_HEADERS}
    )
    message_id = incoming.message_id
    if not message_id:
        message_id = content_key(incoming.type or "", incoming.body)
        user_headers = {**user_headers, names.KEY_ORIGIN: "content"}
        if keyless != "content":
            invalid = invalid or KEYLESS_ERROR
    return Envelope(
        message_id=message_id,
        type=incoming.type or "",
        body=incoming.body,
        correlation_id=incoming.correlation_id or message_id,
        causation_id=causation_id,
        attempt=attempt,
        deadline_ms=deadline_ms,
        timestamp=timestamp,
        app_id=incoming.app_id,
        traceparent=traceparent,
        reply_to=incoming.reply_to,
        headers=user_headers,
        invalid=invalid,
        ignored=ignored,
    )


_NO_HEADERS: Mapping[str, Any] = MappingProxyType({})


def _attempt(value: Any, max_attempt: int) -> int | None:
    """The attempt number, or None when the header says something no worker wrote."""
    if value is None:
        return 1
    number = header_int(value)
    return number if number is not None and 1 <= number <= max_attempt else None


def _deadline(headers: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The deadline (epoch ms) and, when the header is unusable, why."""
    value = headers.get(names.DEADLINE)
    if value is None:
        return None, None
    number = header_int(value)
    if number is not None and 0 <= number <= MAX_DEADLINE_MS:
        return number, None
    return None, (
        f"{names.DEADLINE}={_shown(value)} is not a deadline (epoch milliseconds "
        "between 1970 and 9999): the sender's deadline cannot be honoured"
    )


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
