"""Grouping dead letters by cause, for `framework dlq groups` and `--group`. Pure code.

A cause is the dead-letter reason (`permanent`, `invalid`, `exhausted`, `expired`, a broker
reason...), the exception type the error names, and the error text with what varies from
message to message masked (ids, numbers, quoted values, timestamps). Its group id is a
short hash of those three: the same on every run, on every machine, for every message
that failed the same way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from framework.ops.dead_letter_headers import DeadLetteredMessage

GROUP_ID_LENGTH = 10  # hex digits of the group id
MAX_NORMALISED = 200  # characters of normalised error kept (and hashed)
_MAX_SCANNED = 2000  # characters of an error text looked at (fw-error is bounded anyway)

# `_describe` in handling writes "TypeName: text" (or the bare type name); framework
# sentences ("deadline passed ...", "schema invalid for ...") name no type
_EXCEPTION = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Z]\w*)(?::\s|:?$)")

# applied in order: each later pattern sees the earlier ones' placeholders, which hold no
# digits and no quotes, so they are never masked twice
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\w'\"])'[^'\n]*'(?![\w'])|(?<![\w'\"])\"[^\"\n]*\"(?![\w\"])"), "<str>"),
    (
        re.compile(
            r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE
        ),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    # a run of 8+ hex digits with at least one letter and one digit: object ids, hashes
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"(?:(?<!\w)[-+])?\d+(?:[.,]\d+)*"), "<n>"),
)


def split_error(error: str) -> tuple[str, str]:
    """(exception type, rest of the text): `("ValueError", "bad")` for "ValueError: bad";
    `("", error)` for a text that does not start with a type name."""
    match = _EXCEPTION.match(error)
    if match is None:
        return "", error
    return match.group(1), error[match.end() :]


def normalise_error(text: str) -> str:
    """The error text with its varying parts masked, whitespace collapsed, bounded.

    Quoted values become `<str>`, uuids `<uuid>`, dates and timestamps `<time>`, hex ids
    (0x..., or 8+ hex digits mixing letters and digits) `<hex>`, other numbers `<n>`.
    """
    text = text[:_MAX_SCANNED]
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())[:MAX_NORMALISED]


@dataclass(frozen=True, slots=True)
class FailureCause:
    """What a group's messages have in common."""

    reason: str
    exception_type: str  # "" when the error names none
    error: str  # normalised

    @property
    def group_id(self) -> str:
        """A short hash of reason, exception type and normalised error (stable)."""
        text = "\0".join((self.reason, self.exception_type, self.error))
        return hashlib.sha256(text.encode()).hexdigest()[:GROUP_ID_LENGTH]


def cause_of(reason: str, error: str) -> FailureCause:
    """The cause of a dead letter with this reason and error text."""
    exception_type, rest = split_error(error.strip())
    return FailureCause(reason, exception_type, normalise_error(rest))


def group_of(message: DeadLetteredMessage) -> str:
    """The group id of a dead-lettered message."""
    return cause_of(message.reason, message.error).group_id


@dataclass(slots=True)
class FailureGroup:
    """One group's aggregate: how many, when first and last dead-lettered, one key."""

    cause: FailureCause
    example_key: str  # the first one met (the oldest in queue order)
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def add(self, dead_at: datetime | None) -> None:
        self.count += 1
        if dead_at is None:
            return
        if self.first_seen is None or dead_at < self.first_seen:
            self.first_seen = dead_at
        if self.last_seen is None or dead_at > self.last_seen:
            self.last_seen = dead_at

    def summary(self) -> dict[str, Any]:
        """The `dlq groups --json` object."""
        return {
            "group": self.cause.group_id,
            "count": self.count,
            "reason": self.cause.reason,
            "exception_type": self.cause.exception_type or None,
            "error": self.cause.error,
            "first_seen": None if self.first_seen is None else self.first_seen.isoformat(),
            "last_seen": None if self.last_seen is None else self.last_seen.isoformat(),
            "example_key": self.example_key,
        }


class FailureGroups:
    """Groups built one message at a time: memory grows with the groups, not the messages."""

    def __init__(self) -> None:
        self._groups: dict[str, FailureGroup] = {}

    def add(self, message: DeadLetteredMessage) -> None:
        cause = cause_of(message.reason, message.error)
        group = self._groups.get(cause.group_id)
        if group is None:
            group = self._groups[cause.group_id] = FailureGroup(cause, message.key)
        group.add(message.dead_at)

    def get(self, group_id: str) -> FailureGroup | None:
        return self._groups.get(group_id)

    def rows(self) -> list[FailureGroup]:
        """Largest group first; equal counts in the order they were first met."""
        return sorted(self._groups.values(), key=lambda g: -g.count)
