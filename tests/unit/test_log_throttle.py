"""Repeated errors are logged once per interval, with how many were left out."""

from __future__ import annotations

from framework.resilience.log_throttle import LogThrottle, without_numbers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_occurrence_is_logged() -> None:
    """A new error is logged at once, with nothing suppressed before it."""
    assert LogThrottle(10, Clock()).admit("boom") == 0


def test_repeats_within_the_interval_are_suppressed() -> None:
    """The same error again within the interval is not logged."""
    throttle = LogThrottle(10, Clock())
    throttle.admit("boom")
    assert [throttle.admit("boom") for _ in range(5)] == [None] * 5


def test_next_line_after_the_interval_carries_the_count() -> None:
    """After the interval the error is logged again, saying how often it was suppressed."""
    clock = Clock()
    throttle = LogThrottle(10, clock)
    throttle.admit("boom")
    for _ in range(41):
        throttle.admit("boom")
    clock.now += 10
    assert throttle.admit("boom") == 41
    assert throttle.admit("boom") is None


def test_distinct_errors_are_throttled_apart() -> None:
    """Each error text has its own interval."""
    throttle = LogThrottle(10, Clock())
    assert throttle.admit("a") == 0
    assert throttle.admit("b") == 0
    assert throttle.admit("a") is None


def test_memory_is_bounded() -> None:
    """Beyond max_keys distinct errors the record starts over (still logged, not stored)."""
    throttle = LogThrottle(10, Clock(), max_keys=3)
    for key in "abcd":
        assert throttle.admit(key) == 0
    assert throttle.admit("a") == 0  # forgotten when the fourth came: logged again


def test_errors_that_differ_only_in_numbers_share_a_key() -> None:
    """A rate limit's refusals differ only in their wait: one key, so one line per interval."""
    a = without_numbers("RateLimited: retry after 0.31s: rate limit 'api' (50/s) reached")
    b = without_numbers("RateLimited: retry after 0.027s: rate limit 'api' (50/s) reached")
    assert a == b and "api" in a
    assert without_numbers("limit 'a'") != without_numbers("limit 'b'")
