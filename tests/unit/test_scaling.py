"""Drain time and replica advice are plain arithmetic on depths and rates."""

from __future__ import annotations

import math

import pytest

from framework.ops.scaling import drain_seconds, format_duration, suggested_replicas


def test_empty_queue_drains_now() -> None:
    """An empty queue has nothing to drain, whatever the rates."""
    assert drain_seconds(0, None, None) == 0.0
    assert drain_seconds(0, 10.0, 0.0) == 0.0


def test_drain_time_is_depth_over_net_deliver_rate() -> None:
    """100 waiting, 15/s out and 5/s in: 10 seconds."""
    assert drain_seconds(100, 5.0, 15.0) == pytest.approx(10.0)


def test_growing_queue_never_drains() -> None:
    """Arrivals at least as fast as deliveries: infinite drain time."""
    assert math.isinf(drain_seconds(10, 20.0, 5.0) or 0)
    assert math.isinf(drain_seconds(10, 5.0, 5.0) or 0)


def test_drain_time_unknown_without_rates() -> None:
    """The AMQP fallback has no rates: drain time unknown."""
    assert drain_seconds(10, None, None) is None


def test_replicas_cover_arrivals_plus_backlog_within_target() -> None:
    """20/s arriving, 600 waiting, 60 s target, 5/s per consumer: (20 + 10) / 5 = 6."""
    assert (
        suggested_replicas(backlog=600, arrival_rate=20.0, per_consumer_rate=5.0, target_drain=60.0)
        == 6
    )


def test_replicas_round_up() -> None:
    """Partial capacity needs a whole replica."""
    assert (
        suggested_replicas(backlog=0, arrival_rate=11.0, per_consumer_rate=5.0, target_drain=60.0)
        == 3
    )


def test_idle_empty_queue_needs_no_replicas() -> None:
    """Nothing waiting and nothing arriving: zero (scale to zero is allowed)."""
    assert (
        suggested_replicas(backlog=0, arrival_rate=0.0, per_consumer_rate=None, target_drain=60.0)
        == 0
    )


def test_replicas_unknown_without_observed_throughput() -> None:
    """Work waiting but no consumer has delivered yet: no advice rather than a guess."""
    assert (
        suggested_replicas(backlog=50, arrival_rate=1.0, per_consumer_rate=None, target_drain=60.0)
        is None
    )
    assert (
        suggested_replicas(backlog=50, arrival_rate=None, per_consumer_rate=3.0, target_drain=60.0)
        is None
    )


def test_replicas_capped() -> None:
    """A maximum replica count caps the advice."""
    assert (
        suggested_replicas(
            backlog=10_000,
            arrival_rate=100.0,
            per_consumer_rate=1.0,
            target_drain=10.0,
            max_replicas=20,
        )
        == 20
    )


def test_target_drain_must_be_positive() -> None:
    """A zero target is a programming error."""
    with pytest.raises(ValueError, match="target_drain"):
        suggested_replicas(backlog=1, arrival_rate=1.0, per_consumer_rate=1.0, target_drain=0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "n/a"),
        (math.inf, "∞"),
        (0.0, "0s"),
        (41.2, "42s"),
        (200.0, "3m20s"),
        (7500.0, "2h05m"),
    ],
)
def test_durations_render_compactly(seconds: float | None, shown: str) -> None:
    """Drain times print short and round up."""
    assert format_duration(seconds) == shown
