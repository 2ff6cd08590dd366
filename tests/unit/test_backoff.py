"""Backoff schedule and delay tiers (pure, no broker, no sleeping)."""

from __future__ import annotations

import pytest

from framework.resilience.backoff import RetryPolicy, tier_cap_ms, tier_for


@pytest.mark.parametrize("attempt", range(1, 15))
@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999])
def test_delay_within_bounds(attempt: int, r: float) -> None:
    """Every delay lies in [base, max] whatever the attempt and random draw."""
    policy = RetryPolicy(base_delay=1.0, max_delay=300.0)
    delay = policy.delay(attempt, lambda: r)
    assert 1.0 <= delay <= 300.0


def test_delay_doubles_per_attempt() -> None:
    """Without jitter the nominal delay doubles per failed attempt."""
    policy = RetryPolicy(base_delay=0.5, max_delay=100.0, jitter=0.0)
    assert [policy.delay(a, lambda: 0.0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_first_retry_never_sooner_than_base() -> None:
    """Jitter only spreads upward from the nominal delay."""
    policy = RetryPolicy(base_delay=2.0, max_delay=60.0, jitter=0.5)
    assert policy.delay(1, lambda: 0.0) == 2.0
    assert policy.delay(1, lambda: 1.0) == 3.0


def test_jitter_spreads_at_the_cap() -> None:
    """Capped delays still differ between draws, so replicas do not retry in lockstep."""
    policy = RetryPolicy(base_delay=1.0, max_delay=300.0, jitter=0.5)
    low, high = policy.delay(30, lambda: 0.0), policy.delay(30, lambda: 1.0)
    assert low < high == 300.0
    assert low == pytest.approx(200.0)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """An absurd attempt number still yields the cap, not an OverflowError."""
    assert RetryPolicy(max_delay=10.0).delay(10_000, lambda: 1.0) == 10.0


def test_tiers_double_from_base_to_max() -> None:
    """Tiers are base, 2*base, ... up to the cap."""
    assert RetryPolicy(base_delay=1.0, max_delay=10.0).tiers_ms() == [1000, 2000, 4000, 8000]


@pytest.mark.parametrize(
    ("delay", "tier"),
    [
        (1, 1000),
        (999, 1000),
        (1000, 1000),
        (1999, 1000),
        (2000, 2000),
        (7999, 4000),
        (50_000, 8000),
    ],
)
def test_tier_for_picks_largest_bound_below(delay: int, tier: int) -> None:
    """A delay waits in the tier with the largest lower bound not above it."""
    assert tier_for(delay, [1000, 2000, 4000, 8000]) == tier


def test_tier_cap_bounds_waiting() -> None:
    """Each tier's TTL cap is the next tier's bound (twice the last bound at the end)."""
    tiers = [1000, 2000, 4000]
    assert [tier_cap_ms(t, tiers) for t in tiers] == [2000, 4000, 8000]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": 0}, {"base_delay": 5, "max_delay": 1}, {"jitter": 2}],
)
def test_invalid_policy_rejected(kwargs: dict[str, float]) -> None:
    """Nonsense policies fail at construction."""
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
