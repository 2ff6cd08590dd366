"""Deadline arithmetic: pure functions with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from framework.consume.deadlines import combine_deadline, handler_budget, is_expired, to_epoch_ms

NOW_MS = 1_700_000_000_000
NOW = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)


def test_epoch_ms_of_aware_datetime() -> None:
    """An aware datetime converts to epoch milliseconds regardless of its zone."""
    plus_two = timezone(timedelta(hours=2))
    assert to_epoch_ms(NOW.astimezone(plus_two)) == NOW_MS


def test_naive_datetime_means_utc() -> None:
    """A naive datetime is read as UTC."""
    assert to_epoch_ms(NOW.replace(tzinfo=None)) == NOW_MS


def test_no_deadline_and_no_ttl_is_none() -> None:
    """Without deadline or ttl a message has no deadline."""
    assert combine_deadline(NOW_MS, None, None) is None


def test_ttl_counts_from_now() -> None:
    """A ttl alone gives now + ttl."""
    assert combine_deadline(NOW_MS, None, 2.5) == NOW_MS + 2500


def test_earlier_of_deadline_and_ttl_wins() -> None:
    """With both, the earlier moment is the deadline."""
    deadline = NOW + timedelta(seconds=10)
    assert combine_deadline(NOW_MS, deadline, 3) == NOW_MS + 3000
    assert combine_deadline(NOW_MS, deadline, 30) == NOW_MS + 10_000


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_rejected(ttl: float) -> None:
    """A ttl of zero or less is a mistake, not an instantly expired message."""
    with pytest.raises(ValueError, match="ttl must be positive"):
        combine_deadline(NOW_MS, None, ttl)


def test_no_deadline_never_expires() -> None:
    """A message without a deadline is never expired."""
    assert not is_expired(None, NOW_MS, 0)


def test_expired_only_past_the_tolerance() -> None:
    """A deadline counts as passed only beyond the clock-skew tolerance."""
    assert not is_expired(NOW_MS - 900, NOW_MS, 1.0)
    assert not is_expired(NOW_MS - 1000, NOW_MS, 1.0)
    assert is_expired(NOW_MS - 1001, NOW_MS, 1.0)
    assert is_expired(NOW_MS - 1, NOW_MS, 0)


def test_budget_is_timeout_without_deadline() -> None:
    """Without a deadline a handler gets its whole timeout."""
    assert handler_budget(5.0, None, NOW_MS) == 5.0


def test_budget_never_extends_past_deadline() -> None:
    """A deadline nearer than the timeout cuts the budget to the time remaining."""
    assert handler_budget(30.0, NOW_MS + 2000, NOW_MS) == 2.0
    assert handler_budget(30.0, NOW_MS + 2000, NOW_MS, tolerance=0.5) == 2.5


def test_budget_is_timeout_when_deadline_is_far() -> None:
    """A deadline further away than the timeout leaves the timeout in charge."""
    assert handler_budget(5.0, NOW_MS + 60_000, NOW_MS) == 5.0


def test_budget_is_zero_once_past_deadline() -> None:
    """Past the deadline (and tolerance) the budget is zero, never negative."""
    assert handler_budget(5.0, NOW_MS - 10_000, NOW_MS, tolerance=1.0) == 0.0
