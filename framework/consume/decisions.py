"""What happens to a delivery: decided here, by pure code, in one place.

`decide` maps the outcome of processing (and the attempt, policy and random source) to one
settlement value; `framework.consume.settle` applies it with I/O (confirmed publish, then ack).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from framework.consume.deferrals import next_deferrals
from framework.consume.not_before import hop_ms
from framework.errors import MAX_RETRY_LATER
from framework.resilience.backoff import RandomSource, RetryPolicy, tier_for
from framework.wire import names


class Reason(StrEnum):
    """Why a message is in the dead-letter queue (the `fw-reason` header)."""

    INVALID = "invalid"
    PERMANENT = "permanent"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    DELIVERY_LIMIT = "delivery-limit"


# ---- outcomes of processing one delivery ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Handled:
    """The handler finished; everything it published was confirmed. `result` is the reply."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The idempotency key was already handled in this queue: skip the handler."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Not JSON, schema invalid or unknown type: retrying cannot help."""

    error: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The message's deadline passed before (or while) it could be handled."""

    error: str = "deadline passed"


@dataclass(frozen=True, slots=True)
class Failed:
    """The handler raised (or timed out). `permanent` means it must not be retried;
    `timed_out` that it ran past the worker's timeout (an SLA breach, `framework.ops.sla`)."""

    error: str
    permanent: bool = False
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Deferred:
    """A dependency's circuit is open (or the idempotency store is unavailable): retry after
    `not_before` s without burning an attempt; `deferrals` in a row so far (backoff)."""

    error: str
    not_before: float = 0.0
    deferrals: int = 0


@dataclass(frozen=True, slots=True)
class Busy:
    """Another live worker holds the key: try again later without burning an attempt."""

    deferrals: int = 0  # in a row so far: the delay doubles with each


@dataclass(frozen=True, slots=True)
class Postponed:
    """The handler raised `RetryLater`: handle it again after at least `after` s without
    burning an attempt; `retry_laters` is the count so far (before this one)."""

    error: str
    after: float
    retry_laters: int = 0


@dataclass(frozen=True, slots=True)
class NotYet:
    """A copy on a long wait arrived before its `fw-not-before`: send it on for `remaining`
    s more. The handler did not run; nothing is counted."""

    remaining: float
    error: str = ""  # the copy's `fw-error` (why it waits), kept on the next hop


Outcome = Handled | Duplicate | Invalid | Expired | Failed | Deferred | Busy | Postponed | NotYet


# ---- settlements ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """Done with this delivery."""

    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """Republish to the delay queue `tier_ms` with `delay_ms`, as attempt `next_attempt`."""

    delay_ms: int
    tier_ms: int
    next_attempt: int
    error: str
    deferrals: int | None = None  # for a deferral: the `fw-deferrals` count the copy carries
    retry_later: int | None = None  # after a RetryLater: the `fw-retry-later` count it carries
    # the whole wait (ms from now) when this delay is only one hop of it: `fw-not-before`
    not_before_in_ms: int | None = None
    waiting: bool = False  # a hop of a long wait (NotYet): nothing failed or was deferred


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Republish to the DLQ with the reason and error in headers."""

    reason: Reason
    error: str
    attempts: int


Settlement = Ack | Retry | DeadLetter

MAX_AHEAD_MS = int(MAX_RETRY_LATER * 1000)  # the longest wait a copy carries (jitter included)


def decide(outcome: Outcome, attempt: int, policy: RetryPolicy, rand: RandomSource) -> Settlement:
    """The single place where a delivery's fate is decided."""
    match outcome:
        case Handled():
            return Ack()
        case Duplicate():
            return Ack(duplicate=True)
        case Invalid(error=error):
            return DeadLetter(Reason.INVALID, error, attempt)
        case Expired(error=error):
            return DeadLetter(Reason.EXPIRED, error, attempt)
        case Failed(error=error, permanent=True):
            return DeadLetter(Reason.PERMANENT, error, attempt)
        case Failed(error=error) if attempt >= policy.max_attempts:
            return DeadLetter(Reason.EXHAUSTED, error, attempt)
        case Failed(error=error):
            return _retry(policy, attempt, attempt + 1, error, rand)
        case Deferred() | Busy() | Postponed() | NotYet():
            return _later(outcome, attempt, policy, rand)
    raise AssertionError(f"unhandled outcome {outcome!r}")  # pragma: no cover


def _later(
    outcome: Deferred | Busy | Postponed | NotYet,
    attempt: int,
    policy: RetryPolicy,
    rand: RandomSource,
) -> Settlement:
    """A wait that burns no attempt: a deferral (dependency or store unavailable, key
    busy), the handler's RetryLater (within its budget), or the rest of a long wait."""
    match outcome:
        case Deferred(error=error, not_before=not_before, deferrals=deferrals):
            return _defer(policy, deferrals, attempt, error, rand, not_before)
        case Busy(deferrals=deferrals):
            return _defer(policy, deferrals, attempt, "key held by another worker", rand)
        case Postponed(error=error, retry_laters=count) if count >= policy.retry_later_limit:
            return DeadLetter(Reason.EXHAUSTED, _budget_spent(error, count, policy), attempt)
        case Postponed(error=error, after=after, retry_laters=count):
            wait_ms = min(max(math.ceil(policy.later(after, rand) * 1000), 1), MAX_AHEAD_MS)
            return _wait(policy, wait_ms, attempt, error, retry_later=count + 1)
        case NotYet(remaining=remaining, error=error):
            wait_ms = max(math.ceil(remaining * 1000), 1)
            note = error or f"waiting until its {names.NOT_BEFORE} ({remaining:.3f}s more)"
            return _wait(policy, wait_ms, attempt, note, waiting=True)
    raise AssertionError(f"unhandled outcome {outcome!r}")  # pragma: no cover


def _budget_spent(error: str, count: int, policy: RetryPolicy) -> str:
    return (
        f"retry-later budget spent: the handler asked to retry later {count + 1} times, "
        f"retry_later_limit={policy.retry_later_limit} (raise it, or fix what keeps "
        f"asking); last: {error}"
    )


def _wait(
    policy: RetryPolicy,
    wait_ms: int,
    attempt: int,
    error: str,
    *,
    retry_later: int | None = None,
    waiting: bool = False,
) -> Retry:
    """Send the message on for `wait_ms` as the same attempt, in hops if one cannot carry it."""
    delay_ms, whole_ms = hop_ms(wait_ms, policy.max_hop_ms())
    tier = tier_for(delay_ms, policy.tiers_ms())
    return Retry(delay_ms, tier, attempt, error, None, retry_later, whole_ms, waiting)


def _defer(
    policy: RetryPolicy,
    deferrals: int,
    attempt: int,
    error: str,
    rand: RandomSource,
    not_before: float = 0.0,
) -> Retry:
    """A deferral: same attempt, a delay that doubles with each deferral in a row."""
    return _retry(
        policy, 1 + deferrals, attempt, error, rand, not_before, next_deferrals(deferrals)
    )


def _retry(
    policy: RetryPolicy,
    failed: int,
    next_attempt: int,
    error: str,
    rand: RandomSource,
    not_before: float = 0.0,
    deferrals: int | None = None,
) -> Retry:
    delay_ms = max(int(max(policy.delay(failed, rand), not_before) * 1000), 1)
    return Retry(delay_ms, tier_for(delay_ms, policy.tiers_ms()), next_attempt, error, deferrals)
