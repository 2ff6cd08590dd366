"""What happens to a delivery: decided here, by pure code, in one place.

`decide` maps the outcome of processing (and the attempt, policy and random source) to one
settlement value; `framework.settle` applies it with I/O (confirmed publish, then ack).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from framework.backoff import RandomSource, RetryPolicy, tier_for
from framework.deferrals import next_deferrals


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
    `timed_out` that it ran past the worker's timeout (an SLA breach, `framework.sla`)."""

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


Outcome = Handled | Duplicate | Invalid | Expired | Failed | Deferred | Busy


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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Republish to the DLQ with the reason and error in headers."""

    reason: Reason
    error: str
    attempts: int


Settlement = Ack | Retry | DeadLetter


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
        case Deferred(error=error, not_before=not_before, deferrals=deferrals):
            return _defer(policy, deferrals, attempt, error, rand, not_before)
        case Busy(deferrals=deferrals):
            return _defer(policy, deferrals, attempt, "key held by another worker", rand)
    raise AssertionError(f"unhandled outcome {outcome!r}")  # pragma: no cover


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
