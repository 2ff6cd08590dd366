"""Whether the idempotency store answers: fed by every store call, read by `/readyz`.

Pure bookkeeping (no I/O): a worker whose store calls fail or time out is not ready (its
deliveries are only deferred), and is ready again after the next call that succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framework.resilience.log_throttle import LogThrottle


@dataclass
class StoreHealth:
    """Consecutive failed store calls; healthy after any success."""

    consecutive_failures: int = 0
    failures: int = 0  # in total (a counter for metrics)
    fenced: int = 0  # completions refused because another worker had taken the key over
    # failed calls are logged once per interval per error, with how many were not
    log_throttle: LogThrottle = field(default_factory=LogThrottle, repr=False, compare=False)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0

    def succeeded(self) -> None:
        self.consecutive_failures = 0

    def failed(self) -> None:
        self.consecutive_failures += 1
        self.failures += 1
