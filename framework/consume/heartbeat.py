"""Progress of running handlers: what `ctx.heartbeat()` reports, and what metrics read.

A handler that legitimately runs for minutes calls `await ctx.heartbeat(progress)` now and
then. Each call is recorded here (a `Beat` per running delivery, owned by the worker's
`HandlerProgress`); the worker also renews the delivery's idempotency lease if a renewal is
due (`LeaseKeeper.renew_if_due`). Metrics read `HandlerProgress`: heartbeats counted, the age
of the oldest running handler, and the longest silence (seconds since a running handler last
reported progress, or since it started) -- the gauge to alert on for a hung handler.

Nothing here stops a handler: a coroutine is cancelled only by the worker's `timeout`, and a
thread it started cannot be stopped at all (see `framework.idempotency.leases`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from framework.errors import LeaseLost
from framework.idempotency.leases import LeaseKeeper, current_lease

if TYPE_CHECKING:
    from framework.wire.transport import Transport

Progress = str | float | None
Clock = Callable[[], float]
Reporter = Callable[[Progress], Awaitable[None]]

_log = structlog.get_logger("framework.worker")


@dataclass(slots=True)
class Beat:
    """One running delivery: when it started, when it last reported, what it said."""

    started: float
    last: float
    progress: Progress = None
    count: int = 0


@dataclass
class HandlerProgress:
    """The running deliveries of one worker and their heartbeats (clock: monotonic s)."""

    clock: Clock = time.monotonic
    heartbeats: int = 0
    _beats: dict[int, Beat] = field(default_factory=dict, repr=False)

    def start(self) -> Beat:
        """Register a delivery whose handling begins now; `finish` it when it ends."""
        now = self.clock()
        beat = Beat(started=now, last=now)
        self._beats[id(beat)] = beat
        return beat

    def finish(self, beat: Beat) -> None:
        self._beats.pop(id(beat), None)

    def beat(self, beat: Beat, progress: Progress) -> float:
        """Record a heartbeat of `beat`'s handler; returns seconds since its previous one."""
        now = self.clock()
        silence = now - beat.last
        beat.last = now
        beat.progress = progress
        beat.count += 1
        self.heartbeats += 1
        return silence

    def reporter(self, beat: Beat, leases: LeaseKeeper | None, bus: Transport) -> Reporter:
        """What `ctx.heartbeat(progress)` of `beat`'s delivery calls: record the beat, log
        it at debug, renew the delivery's lease if a renewal is due (the lease `handling`
        holds for the delivery's task, `current_lease`), raise `LeaseLost` if it is gone."""

        async def report(progress: Progress) -> None:
            silence = self.beat(beat, progress)
            _log.debug(
                "handler.heartbeat",
                progress=progress,
                since_last_s=round(silence, 3),
                running_s=round(beat.last - beat.started, 3),
            )
            held = current_lease.get()
            if held is None or leases is None:
                return
            if not await leases.renew_if_due(bus.idempotency, held):
                raise LeaseLost(
                    f"another worker holds the key {held.key!r} of this delivery on "
                    f"{held.scope}: its lease lapsed while this handler ran (idempotency "
                    "store unreachable past the lease?); stop here, or its work is done twice"
                )

        return report

    def oldest_age(self) -> float:
        """Seconds the longest-running delivery has run (0 when none runs)."""
        now = self.clock()
        return max((now - b.started for b in self._beats.values()), default=0.0)

    def longest_silence(self) -> float:
        """Seconds since the quietest running delivery last reported progress (or started;
        0 when none runs): a value that keeps growing is a handler that stopped reporting."""
        now = self.clock()
        return max((now - b.last for b in self._beats.values()), default=0.0)

    def __len__(self) -> int:
        return len(self._beats)


def check_progress(progress: object) -> Progress:
    """`progress` as `ctx.heartbeat` accepts it: a str, a number (not a bool) or None."""
    if progress is None or isinstance(progress, str):
        return progress
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        return float(progress)
    raise TypeError(
        f"ctx.heartbeat(progress) takes a str, a number or None, got {type(progress).__name__}"
    )
