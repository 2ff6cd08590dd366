"""Scheduled sends (`bus.send(cmd, delay=...)` / `not_before=...`): the pure decisions.

A scheduled command waits on the broker, durably, in a binary countdown of delay queues
(no delayed-message plugin): stage k holds a message for exactly `UNIT_MS * 2**k` ms. A
delay is rounded up to whole units and written in binary, one `fw-schedule-<k>` header per
stage ("1": wait in stage k, "0": pass it by). Each stage is a headers exchange routing by
that header either into its wait queue, whose TTL dead-letters into the next stage, or
straight on to the next stage; after the last stage the command enters `fw.commands` with
its own routing key, as if sent then. So every wait queue holds messages of one TTL (no
head-of-line blocking), a delay of days takes at most `STAGES` hops, a command never
arrives early, and a worker (of any version, or a foreign consumer) sees it only when due.

Everything here is pure and unit-tested without a broker; `framework.wire.schedule_declare`
declares the stages and the buses publish with `route_for`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from framework.consume.not_before import not_before_header
from framework.errors import ConfigurationError
from framework.wire import names

if TYPE_CHECKING:
    from framework.wire.envelope import Envelope

UNIT_MS = 100  # the granularity: a scheduled command is due at most this much late
STAGES = 23  # 100 ms * (2**23 - 1) = 9.7 days of countdown, above MAX_DELAY
MAX_DELAY = 7 * 24 * 3600.0  # seconds: the longest delay `send` accepts (7 days)


class InvalidSchedule(ConfigurationError, ValueError):
    """`delay` / `not_before` given to `send` make no schedule; the message says why."""


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the countdown: exchange `exchange` routes a message carrying
    `header` = "1" into `queue` (TTL `wait_ms`, dead-lettering to `next_exchange`) and one
    carrying "0" straight to `next_exchange`."""

    index: int
    wait_ms: int
    exchange: str
    queue: str
    next_exchange: str

    @property
    def header(self) -> str:
        return stage_header(self.index)


@dataclass(frozen=True, slots=True)
class ScheduledRoute:
    """Where a scheduled command is published, and the headers it carries."""

    exchange: str
    headers: Mapping[str, str | int]
    due_at: float  # epoch seconds (the `fw-not-before` header carries it in epoch ms)
    delay: float  # seconds, rounded up to whole units


def stage_header(index: int) -> str:
    return f"{names.SCHEDULE_HEADER_PREFIX}{index}"


def stages() -> tuple[Stage, ...]:
    """The countdown's stages, entry first (`names.SCHEDULE_EXCHANGE` is stage 0's)."""
    result = []
    for index in range(STAGES):
        wait_ms = UNIT_MS * 2**index
        following = names.schedule_exchange(index + 1)
        result.append(
            Stage(
                index=index,
                wait_ms=wait_ms,
                exchange=names.schedule_exchange(index),
                queue=names.schedule_queue(wait_ms),
                next_exchange=following if index + 1 < STAGES else names.COMMANDS_EXCHANGE,
            )
        )
    return tuple(result)


def requested_delay(delay: float | None, not_before: datetime | None, now: float) -> float | None:
    """Seconds to hold the command (None: send now), from `delay` or `not_before`.

    Refused with `InvalidSchedule`: both given, a negative or non-finite delay, a naive
    `not_before`, or a delay over `MAX_DELAY`. A `not_before` already past sends now.
    """
    if delay is not None and not_before is not None:
        raise InvalidSchedule(
            "give either delay= (seconds from now) or not_before= (a datetime), not both"
        )
    if not_before is not None:
        if not_before.tzinfo is None or not_before.utcoffset() is None:
            raise InvalidSchedule(
                f"not_before={not_before.isoformat()} has no time zone: pass an aware "
                "datetime, e.g. datetime.now(UTC) + timedelta(minutes=5)"
            )
        delay = max(not_before.timestamp() - now, 0.0)
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        raise InvalidSchedule(f"delay={delay!r} is not a number of seconds")
    if delay < 0:
        raise InvalidSchedule(f"delay={delay!r} is negative: give seconds from now, >= 0")
    if delay > MAX_DELAY:
        raise InvalidSchedule(
            f"delay={delay:g}s is over the maximum of {MAX_DELAY:g}s (7 days): keep "
            "longer-term schedules in your own database and send when they come near"
        )
    return float(delay) if delay > 0 else None


def delay_units(delay: float) -> int:
    """Whole units a delay waits: rounded up, so a command is never due early."""
    return max(math.ceil(round(delay * 1000, 6) / UNIT_MS), 1)


def stage_headers(units: int) -> dict[str, str]:
    """The countdown headers for `units`: bit k of it says whether stage k holds it."""
    if not 1 <= units < 2**STAGES:
        raise ValueError(f"{units} units cannot be counted down by {STAGES} stages")
    return {stage_header(k): "1" if units >> k & 1 else "0" for k in range(STAGES)}


def waits_of(units: int) -> list[int]:
    """The wait (ms) of each stage that holds a message of `units`, in order."""
    return [s.wait_ms for s in stages() if units >> s.index & 1]


def route_for(delay: float, now: float) -> ScheduledRoute:
    """How to publish a command to be due `delay` seconds after `now` (epoch seconds)."""
    units = delay_units(delay)
    rounded = units * UNIT_MS / 1000
    due_at = now + rounded
    headers: dict[str, str | int] = {
        **stage_headers(units),
        names.NOT_BEFORE: not_before_header(due_at),
    }
    return ScheduledRoute(names.SCHEDULE_EXCHANGE, headers, due_at, rounded)


def scheduled(envelope: Envelope, exchange: str, delay: float | None) -> tuple[Envelope, str]:
    """The envelope and exchange to publish a message with: unchanged without a delay,
    else through the countdown, due `delay` s after the envelope's timestamp."""
    if delay is None:
        return envelope, exchange
    now = envelope.timestamp.timestamp() if envelope.timestamp is not None else time.time()
    route = route_for(delay, now)
    return replace(envelope, headers={**envelope.headers, **route.headers}), route.exchange
