"""Reconnect delays back off exponentially with jitter, so replicas do not stampede."""

from __future__ import annotations

import pytest

from framework.robust import reconnect_delay


@pytest.mark.parametrize("failures", range(0, 40))
@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_delay_bounds(failures: int, rand: float) -> None:
    """Delays stay within [base/2, cap]."""
    assert 0.25 <= reconnect_delay(failures, rand) <= 15.0


def test_delay_doubles_then_caps() -> None:
    """The nominal delay doubles per failure until the cap."""
    assert [reconnect_delay(n, 1.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_jitter_spreads_delays() -> None:
    """Two draws at the same failure count differ by up to half."""
    assert reconnect_delay(3, 0.0) == 2.0
    assert reconnect_delay(3, 1.0) == 4.0
