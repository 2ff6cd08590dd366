"""Logging a delivery's settlement once, with the fields that say what happened.

Deliveries are bound to the log context (message_id, queue, attempt) by the worker; the
repeated lines of deferrals and rate-limit refusals are throttled (`LogThrottle`).
"""

from __future__ import annotations

import structlog

from framework.consume.decisions import Ack, DeadLetter, Retry, Settlement
from framework.errors import RateLimited
from framework.resilience.log_throttle import LogThrottle, without_numbers

_settlement_log = structlog.get_logger("framework.worker")


def log_settlement(settlement: Settlement, deferrals: LogThrottle) -> None:
    """Log one applied settlement (an ack says nothing; deferrals and rate-limit refusals,
    which come alike from many deliveries, once per error per interval)."""
    log = _settlement_log
    match settlement:
        case Ack(duplicate=True):
            log.info("delivery.duplicate_skipped")
        case Ack():
            pass  # the normal case: nothing to say at any level (keeps the hot path cheap)
        case Retry(retry_later=int(count)):
            # a rate limit refuses many deliveries alike: those lines are throttled
            limited = settlement.error.startswith(RateLimited.__name__)
            repeated = deferrals.admit(without_numbers(settlement.error)) if limited else 0
            if repeated is not None:
                log.info(
                    "delivery.retry_later",
                    delay_ms=settlement.not_before_in_ms or settlement.delay_ms,
                    retry_laters=count,
                    error=settlement.error,
                    repeated=repeated,
                )
        case Retry(waiting=True):
            log.debug("delivery.waiting", delay_ms=settlement.delay_ms)
        case Retry(deferrals=None):
            log.warning(
                "delivery.retry_scheduled",
                delay_ms=settlement.delay_ms,
                next_attempt=settlement.next_attempt,
                error=settlement.error,
            )
        case Retry():  # a deferral: the same error comes from every delivery while it lasts
            repeated = deferrals.admit(settlement.error)
            if repeated is not None:
                log.warning(
                    "delivery.retry_scheduled",
                    delay_ms=settlement.delay_ms,
                    next_attempt=settlement.next_attempt,
                    error=settlement.error,
                    deferrals=settlement.deferrals,
                    repeated=repeated,
                )
        case DeadLetter():
            log.error(
                "delivery.dead_lettered",
                reason=settlement.reason.value,
                error=settlement.error,
                attempts=settlement.attempts,
            )
