"""Outbox rows as data: the envelope survives JSON, streams keep their order (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from framework import Command, Event
from framework.outbox.postgres import affected
from framework.outbox.rows import (
    ClaimedRow,
    by_stream,
    envelope_from_json,
    envelope_json,
    expiration_ms,
    retry_delay,
    routing_of,
)
from framework.wire import names
from framework.wire.envelope import Envelope


class Ping(Command):
    n: int


class Pinged(Event):
    n: int


def envelope(key: str = "k1") -> Envelope:
    return Envelope(
        message_id=key,
        type="Ping",
        body=b'{"n":1}',
        correlation_id="c1",
        causation_id="m0",
        attempt=1,
        deadline_ms=1_700_000_000_123,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        app_id="svc",
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        reply_to=None,
        headers={"x-tenant": "t1"},
    )


def row(row_id: int, stream: str) -> ClaimedRow:
    return ClaimedRow(
        id=row_id,
        stream=stream,
        exchange="e",
        routing_key="r",
        mandatory=False,
        envelope=envelope(f"k{row_id}"),
        created_at=0.0,
    )


def test_envelope_round_trips_through_json() -> None:
    """Every envelope field comes back equal from its JSON column (body kept apart)."""
    original = envelope()
    text = envelope_json(original)
    assert "body" not in json.loads(text)
    assert envelope_from_json(text, original.body) == original


def test_envelope_reads_from_decoded_jsonb() -> None:
    """A jsonb column decoded to a dict reads the same as its text."""
    original = envelope()
    assert envelope_from_json(json.loads(envelope_json(original)), original.body) == original


def test_commands_are_mandatory_on_the_commands_exchange() -> None:
    """Routing in the row is what the bus uses: commands mandatory, events not."""
    assert routing_of(Ping(n=1)) == (names.COMMANDS_EXCHANGE, Ping.type_name, True)
    assert routing_of(Pinged(n=1)) == (names.EVENTS_EXCHANGE, Pinged.type_name, False)


def test_streams_keep_commit_order() -> None:
    """Rows group by stream, each group in id order, streams by their first row."""
    groups = by_stream([row(3, "b"), row(1, "a"), row(4, "a"), row(2, "b")])
    assert [[r.id for r in g] for g in groups] == [[1, 4], [2, 3]]


def test_expiration_counts_from_publish_time() -> None:
    """A row published late expires by its deadline, at least 1 ms (None: never)."""
    assert expiration_ms(None, 1000) is None
    assert expiration_ms(5000, 1000) == 4000
    assert expiration_ms(500, 1000) == 1


def test_retry_delay_doubles_up_to_the_cap() -> None:
    """Failed publishes back off 0.5, 1, 2 ... seconds, capped."""
    assert [retry_delay(n, cap=3.0) for n in (0, 1, 2, 3, 4)] == [0.5, 0.5, 1.0, 2.0, 3.0]


def test_command_status_gives_rows_changed() -> None:
    """asyncpg's command status tag becomes a row count."""
    assert affected("INSERT 0 1") == 1
    assert affected("UPDATE 3") == 3
    assert affected("CREATE TABLE") == 0
