"""Reading dead-lettered messages: why they died, and what a replay sends back. Pure code.

A message the framework dead-lettered says why in `fw-reason`; one the broker dead-lettered
itself (delivery limit, expiry, reject, max length) carries `x-death` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from framework.wire import names
from framework.wire.header_values import header_int, shown_text
from framework.wire.keys import content_key

# x-death reasons the broker writes -> the one word we report
_BROKER_REASONS = {
    "delivery_limit": "delivery-limit",
    "expired": "expired",
    "rejected": "rejected",
    "maxlen": "maxlen",
}

# headers that describe the death, dropped on replay (with the deadline, attempt reset)
_DEATH_HEADERS = frozenset(
    {
        names.REASON,
        names.ERROR,
        names.ATTEMPTS,
        names.ORIGINAL_QUEUE,
        names.FAILED_AT,
        names.DEADLINE,
        names.RETRY_LATER,  # a replay starts a fresh retry-later budget ...
        names.NOT_BEFORE,  # ... and is handled now
        names.X_DEATH,
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
        "x-last-death-reason",
        "x-last-death-queue",
        "x-last-death-exchange",
        "x-delivery-count",
    }
)


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = headers.get(names.X_DEATH)
    return [d for d in raw if isinstance(d, Mapping)] if isinstance(raw, list | tuple) else []


def _fatal_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The x-death entry that sent it to the DLQ: the newest not from a retry tier.

    Retry tiers dead-letter by expiry back to the worker queue; those deaths are routine.
    """
    deaths = _deaths(headers)
    for death in deaths:
        if ".retry." not in (shown_text(death.get("queue")) or ""):
            return death
    return deaths[0] if deaths else None


def dead_letter_reason(headers: Mapping[str, Any]) -> str:
    """One reason for a dead-lettered message, from `fw-reason` or else `x-death`.

    Broker reasons map to `delivery-limit`, `expired`, `rejected`, `maxlen`; `unknown` if
    neither header says anything.
    """
    own = shown_text(headers.get(names.REASON))
    if own:
        return own
    death = _fatal_death(headers)
    if death is None:
        return "unknown"
    broker = shown_text(death.get("reason")) or "unknown"
    return _BROKER_REASONS.get(broker, broker)


def dead_letter_error(headers: Mapping[str, Any]) -> str:
    """The error text: `fw-error`, or a sentence about the broker's own dead-lettering."""
    own = shown_text(headers.get(names.ERROR))
    if own:
        return own
    death = _fatal_death(headers)
    if death is None:
        return ""
    queue = shown_text(death.get("queue")) or "?"
    count = death.get("count")
    times = f" ({count}x)" if isinstance(count, int) else ""
    return f"dead-lettered by the broker from {queue}: {shown_text(death.get('reason'))}{times}"


def dead_letter_attempts(headers: Mapping[str, Any]) -> int | None:
    """Attempts made: `fw-attempts` (the framework dead-lettered it), else `fw-attempt`.

    Never `x-delivery-count`: on a message read from the DLQ it counts the DLQ's own
    returns, i.e. how often it was listed (3.10 starts it at 0, 4.x omits it at first), not
    the attempts made before the broker dead-lettered it."""
    for key in (names.ATTEMPTS, names.ATTEMPT):
        value = header_int(headers.get(key))
        if value is not None:
            return value
    return None


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def dead_lettered_at(headers: Mapping[str, Any], timestamp: datetime | None) -> datetime | None:
    """When it died: `fw-failed-at`, else the x-death time, else the message timestamp."""
    own = shown_text(headers.get(names.FAILED_AT))
    if own:
        try:
            return _as_utc(datetime.fromisoformat(own))
        except ValueError:
            pass
    death = _fatal_death(headers)
    if death is not None and isinstance(death.get("time"), datetime):
        return _as_utc(death["time"])
    return None if timestamp is None else _as_utc(timestamp)


@dataclass(frozen=True)
class DeadLetteredMessage:
    """A message found in a DLQ, with the facts `dlq list` and `dlq show` print."""

    key: str
    type: str
    reason: str
    error: str
    attempts: int | None
    dead_at: datetime | None
    correlation_id: str | None
    headers: Mapping[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.dead_at is None else max((now - self.dead_at).total_seconds(), 0.0)

    def summary(self, now: datetime) -> dict[str, Any]:
        """The `dlq list --json` object."""
        age = self.age_seconds(now)
        return {
            "key": self.key,
            "type": self.type,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "age_seconds": None if age is None else round(age, 1),
            "dead_at": None if self.dead_at is None else self.dead_at.isoformat(),
            "correlation_id": self.correlation_id,
        }


def describe(
    *,
    message_id: str | None,
    type_: str | None,
    correlation_id: str | None,
    headers: Mapping[str, Any],
    timestamp: datetime | None,
    body: bytes,
) -> DeadLetteredMessage:
    """Everything worth knowing about one dead-lettered message (one without message_id,
    which only the broker's own dead-lettering leaves, is known by `dead_letter_key`)."""
    return DeadLetteredMessage(
        key=dead_letter_key(message_id, type_, body),
        type=type_ or "(no type)",
        reason=dead_letter_reason(headers),
        error=dead_letter_error(headers),
        attempts=dead_letter_attempts(headers),
        dead_at=dead_lettered_at(headers, timestamp),
        correlation_id=correlation_id,
        headers=headers,
        body=body,
    )


def dead_letter_key(message_id: str | None, type_: str | None, body: bytes) -> str:
    """The key a DLQ message is listed, selected and replayed under: its message_id, or for
    a message without one the content key a `keyless = "content"` worker would give it
    (stable: listing, selecting and replaying it again always agree, and a replay cut by a
    crash and repeated is absorbed as a duplicate)."""
    return message_id or content_key(type_ or "", body)


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers for a replayed copy: death details, deadline, retry-later count and
    not-before dropped, attempt back to 1."""
    kept = {k: v for k, v in headers.items() if k not in _DEATH_HEADERS}
    kept[names.ATTEMPT] = 1
    return kept
