"""What a settlement logs: each RetryLater once per delivery, a rate limit's refusals
throttled (they come alike from every delivery while the limit is reached)."""

from __future__ import annotations

from structlog.testing import capture_logs

from framework.consume.decisions import Retry
from framework.consume.settlement_log import log_settlement
from framework.resilience.log_throttle import LogThrottle


def retry_later(error: str) -> Retry:
    return Retry(1000, 1000, 1, error, retry_later=1)


def test_every_retry_later_of_a_handler_is_logged() -> None:
    """A handler's own RetryLater is logged each time, with its reason."""
    throttle = LogThrottle(interval=60, clock=lambda: 0.0)
    with capture_logs() as logs:
        for _ in range(3):
            log_settlement(retry_later("RetryLater: retry after 5s: not ready"), throttle)
    assert [entry["event"] for entry in logs] == ["delivery.retry_later"] * 3
    assert logs[0]["error"].endswith("not ready")


def test_rate_limit_refusals_are_logged_once_per_interval_with_a_count() -> None:
    """Refusals that differ only in their wait share one line per interval."""
    now = [0.0]
    throttle = LogThrottle(interval=10, clock=lambda: now[0])
    with capture_logs() as logs:
        for wait in (0.31, 0.12, 0.05):
            text = f"RateLimited: retry after {wait}s: rate limit 'api' (50/s) reached"
            log_settlement(retry_later(text), throttle)
        now[0] = 11.0
        log_settlement(retry_later("RateLimited: retry after 0.2s: rate limit 'api'"), throttle)
        log_settlement(
            retry_later("RateLimited: retry after 0.2s: rate limit 'api' (50/s) reached"),
            throttle,
        )
    repeats = [entry["repeated"] for entry in logs]
    assert repeats == [0, 0, 2]
