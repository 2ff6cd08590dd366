"""The failure decision function: outcome + attempt + policy -> settlement (pure)."""

from __future__ import annotations

import pytest

from framework.consume.decisions import (
    Ack,
    Busy,
    DeadLetter,
    Duplicate,
    Expired,
    Failed,
    Handled,
    Invalid,
    Reason,
    Retry,
    decide,
)
from framework.resilience.backoff import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, jitter=0.5)


def fixed(r: float):  # type: ignore[no-untyped-def]
    return lambda: r


def test_handled_is_acked() -> None:
    """A handled message is acked."""
    assert decide(Handled(), 1, POLICY, fixed(0)) == Ack()


def test_duplicate_is_acked_and_marked() -> None:
    """A duplicate is acked without running, flagged for metrics."""
    assert decide(Duplicate(), 2, POLICY, fixed(0)) == Ack(duplicate=True)


def test_invalid_goes_to_dlq_at_once() -> None:
    """Invalid bodies are dead-lettered on the first attempt."""
    assert decide(Invalid("bad"), 1, POLICY, fixed(0)) == DeadLetter(Reason.INVALID, "bad", 1)


def test_permanent_goes_to_dlq_at_once() -> None:
    """A permanent failure is never retried."""
    result = decide(Failed("no", permanent=True), 1, POLICY, fixed(0))
    assert result == DeadLetter(Reason.PERMANENT, "no", 1)


def test_expired_goes_to_dlq() -> None:
    """A message past its deadline is dead-lettered as expired."""
    assert decide(Expired(), 1, POLICY, fixed(0)).reason is Reason.EXPIRED  # type: ignore[union-attr]


@pytest.mark.parametrize(("attempt", "delay_ms", "tier"), [(1, 1000, 1000), (2, 2000, 2000)])
def test_transient_failure_retries_with_backoff(attempt: int, delay_ms: int, tier: int) -> None:
    """A transient failure below max_attempts is retried later as the next attempt."""
    result = decide(Failed("oops"), attempt, POLICY, fixed(0))
    assert result == Retry(delay_ms=delay_ms, tier_ms=tier, next_attempt=attempt + 1, error="oops")


def test_jitter_moves_delay_within_tier_band() -> None:
    """The jittered delay stays within its tier's band."""
    result = decide(Failed("oops"), 1, POLICY, fixed(0.99))
    assert isinstance(result, Retry)
    assert 1000 <= result.delay_ms < 2000 and result.tier_ms == 1000


def test_exhausted_after_max_attempts() -> None:
    """The last allowed attempt failing dead-letters with the attempt count."""
    assert decide(Failed("oops"), 3, POLICY, fixed(0)) == DeadLetter(Reason.EXHAUSTED, "oops", 3)


def test_busy_retries_without_burning_an_attempt() -> None:
    """A key held by another worker is retried later with the same attempt number."""
    result = decide(Busy(), 2, POLICY, fixed(0))
    assert isinstance(result, Retry) and result.next_attempt == 2 and result.delay_ms == 1000


def test_deferred_retries_after_breaker_reset_without_burning_attempt() -> None:
    """An open circuit defers the message until at least the breaker's reset time."""
    from framework.consume.decisions import Deferred

    result = decide(Deferred("circuit open", not_before=5.0), 2, POLICY, fixed(0))
    assert isinstance(result, Retry)
    assert result.next_attempt == 2 and result.delay_ms >= 5000 and result.tier_ms == 4000
