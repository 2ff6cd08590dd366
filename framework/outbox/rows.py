"""Outbox rows as data: the envelope and routing of a message, to and from JSON (pure).

A row holds everything needed to publish the message again from another process: routing
(exchange, routing key, mandatory) in columns, the envelope's fields as one JSON object, the
body as bytes. No pickle: a row is readable with any SQL client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from framework.messages import Message, is_command
from framework.resilience.retrying import OUTBOX_ROW
from framework.wire import names
from framework.wire.envelope import Envelope


@dataclass(frozen=True, slots=True)
class NewRow:
    """A message to insert into the outbox inside a transaction."""

    stream: str
    exchange: str
    routing_key: str
    mandatory: bool
    envelope: Envelope

    @property
    def key(self) -> str:
        return self.envelope.message_id


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """An unsent row a relay has claimed (for `lease` seconds) to publish."""

    id: int
    stream: str
    exchange: str
    routing_key: str
    mandatory: bool
    envelope: Envelope
    created_at: float
    attempts: int = 0


def routing_of(message: Message) -> tuple[str, str, bool]:
    """(exchange, routing key, mandatory) the bus uses for `message`."""
    if is_command(type(message)):
        return names.COMMANDS_EXCHANGE, message.type_name, True
    return names.EVENTS_EXCHANGE, message.type_name, False


def envelope_json(envelope: Envelope) -> str:
    """The envelope's fields except the body, as JSON (headers must be JSON values)."""
    return json.dumps(
        {
            "message_id": envelope.message_id,
            "type": envelope.type,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "attempt": envelope.attempt,
            "deadline_ms": envelope.deadline_ms,
            "timestamp": None if envelope.timestamp is None else envelope.timestamp.isoformat(),
            "app_id": envelope.app_id,
            "traceparent": envelope.traceparent,
            "reply_to": envelope.reply_to,
            "headers": dict(envelope.headers),
        },
        separators=(",", ":"),
    )


def envelope_from_json(data: str | Mapping[str, Any], body: bytes) -> Envelope:
    """The envelope `envelope_json` wrote, with its body."""
    fields: Mapping[str, Any] = json.loads(data) if isinstance(data, str) else data
    stamp = fields.get("timestamp")
    return Envelope(
        message_id=str(fields["message_id"]),
        type=str(fields["type"]),
        body=bytes(body),
        correlation_id=str(fields["correlation_id"]),
        causation_id=fields.get("causation_id"),
        attempt=int(fields.get("attempt") or 1),
        deadline_ms=fields.get("deadline_ms"),
        timestamp=None if stamp is None else datetime.fromisoformat(stamp).astimezone(UTC),
        app_id=fields.get("app_id"),
        traceparent=fields.get("traceparent"),
        reply_to=fields.get("reply_to"),
        headers=dict(fields.get("headers") or {}),
    )


def expiration_ms(deadline_ms: int | None, now_ms: int) -> int | None:
    """The AMQP expiration when publishing now (at least 1 ms; None: no deadline)."""
    return None if deadline_ms is None else max(deadline_ms - now_ms, 1)


def by_stream(rows: Iterable[ClaimedRow]) -> list[list[ClaimedRow]]:
    """Rows grouped by stream, each group in id order (streams in order of first row).

    A relay publishes streams concurrently and each stream's rows one after the other, so
    the order of messages within a stream is the order they were committed in.
    """
    groups: dict[str, list[ClaimedRow]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        groups.setdefault(row.stream, []).append(row)
    return list(groups.values())


def retry_delay(
    attempts: int, *, base: float = OUTBOX_ROW.first, cap: float = OUTBOX_ROW.cap
) -> float:
    """Seconds before a row that failed `attempts` times is tried again (doubling, capped;
    `retrying.OUTBOX_ROW`)."""
    return replace(OUTBOX_ROW, first=base, cap=cap).nominal(attempts)
