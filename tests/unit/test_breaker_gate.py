"""The consumer mode rule: paused while open, probing while half-open, full when closed."""

from __future__ import annotations

from framework.consume.breaker_gate import Mode, consumer_mode
from framework.resilience.breaker import BreakerState

C, OPEN, H = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def test_no_breakers_means_full_prefetch() -> None:
    """Without breakers the worker consumes at full prefetch."""
    assert consumer_mode([], 32) == Mode(32)


def test_any_open_pauses() -> None:
    """One open breaker pauses the consumer, whatever the others say."""
    assert consumer_mode([(C, 1), (OPEN, 1), (H, 2)], 32) == Mode(0)


def test_half_open_probes_with_smallest_limit() -> None:
    """Half-open breakers admit only as many deliveries as the strictest probe limit."""
    assert consumer_mode([(C, 5), (H, 3), (H, 2)], 32) == Mode(2)
    assert consumer_mode([(H, 50)], 8) == Mode(8)


def test_all_closed_full_prefetch() -> None:
    """Closed breakers restore the full prefetch."""
    assert consumer_mode([(C, 1), (C, 1)], 16) == Mode(16)
