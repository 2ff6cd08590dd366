"""Service levels as data: how long a message waited in its queue, and which breaches count.

Pure functions, clock passed in; `framework.ops.metrics` exports what the worker feeds it.

Time in queue runs from the message's publish to the start of its handling. The publish time
is the AMQP `timestamp` property the framework sets on every message it sends: the protocol
carries whole seconds (the sender's time rounded down), so a wait reads up to one second
longer than it was and sub-second waits are coarse. The sender's clock and the worker's
must agree to within `Settings.clock_skew_tolerance` (see `framework.consume.deadlines`): a
timestamp ahead of the worker's clock by no more than that reads as a wait of 0, never a
negative one; one further ahead is not trusted and not measured (`skewed`).

Only a message's first delivery is measured: retried and deferred copies keep the original
timestamp, so their wait would be the backoff the framework chose, not a queue backlog. A
redelivery after a lost connection, and a replayed dead letter (it keeps its timestamp), do
count from the original publish.
"""

from __future__ import annotations

from enum import StrEnum

from framework.consume.decisions import DeadLetter, Reason, Settlement
from framework.consume.deferrals import deferrals_of
from framework.wire.envelope import Envelope


class Breach(StrEnum):
    """A service level missed (the `kind` label of `framework_sla_breaches_total`)."""

    DEADLINE = "deadline"  # dead-lettered because its deadline passed, before or while handled
    TIMEOUT = "timeout"  # its handler ran past the worker's `timeout`


def published_at(envelope: Envelope) -> float | None:
    """Epoch seconds a first delivery was published; None when its wait is not measured
    (no timestamp, or a retried or deferred copy)."""
    if envelope.timestamp is None or envelope.attempt != 1 or deferrals_of(envelope.headers):
        return None
    return envelope.timestamp.timestamp()


def time_in_queue(published: float, now: float, tolerance: float) -> float | None:
    """Seconds from `published` to `now`, never negative: a publish time ahead of `now` by at
    most `tolerance` seconds is clock skew and reads 0; further ahead it cannot be trusted
    (None)."""
    wait = now - published
    if wait >= 0.0:
        return wait
    return 0.0 if -wait <= tolerance else None


def breach_of(settlement: Settlement, timed_out: bool) -> Breach | None:
    """The breach an applied settlement reports: a deadline that passed, a handler timeout."""
    if isinstance(settlement, DeadLetter) and settlement.reason is Reason.EXPIRED:
        return Breach.DEADLINE
    return Breach.TIMEOUT if timed_out else None
