"""How long a command sent now would wait in its queue, from what the workers measured.

Pure code, clocks passed in. Workers measure (`HandlingRate`, `BacklogTrend`) and publish a
`LoadReport` per replica every few seconds (`framework.resilience.load_status`); a sending bus keeps
the latest report of each replica (`LoadBoard`) and, before a send with a deadline, asks
`refusal` whether the predicted wait leaves the message time to be handled.

The prediction: a message sent now starts once the backlog ahead of it has drained, so it
waits about `backlog / rate`, where `rate` is the handling rate of all replicas together
and `backlog` is the freshest reading of the queue's ready messages, carried forward by how
fast it was growing or shrinking; then its own handling takes the mean handling time (a
handler is cancelled at the message's deadline, so it must finish, not just start, by
then). A queue with no fresh report is never predicted: no prediction means no refusal
(today's behaviour), so a stopped reporter cannot block sends.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# A report is fresh for this many of its replica's intervals (one lost report is no gap).
STALE_INTERVALS = 3.0


class LoadReport(BaseModel):
    """What one worker replica measured about its queue (the body on `fw.load`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    queue: str = Field(min_length=1)
    replica: str = Field(min_length=1)  # unique per running worker
    types: tuple[str, ...]  # the command types routed to `queue`
    backlog: int = Field(ge=0)  # ready messages when read
    backlog_trend: float  # messages per second the backlog grew (negative: shrank)
    in_flight: int = Field(ge=0)  # deliveries this replica was handling
    rate: float = Field(ge=0.0)  # messages per second this replica handles (HandlingRate)
    handling: float = Field(default=0.0, ge=0.0)  # mean seconds one handler took, lately
    interval: float = Field(gt=0.0)  # seconds until its next report


class HandlingRate:
    """Messages per second one worker can handle, from the settlements of the last `window`
    seconds: the larger of what it did (settlements / window) and what its concurrency
    allows at the handling times it saw (`concurrency / mean duration`, Little's law).

    The first alone would under-read an idle worker (it handles only what arrives); the
    second alone would over-read a CPU-bound one while it is idle. Once a backlog builds,
    the worker is saturated and both agree; before, the backlog is empty and the rate barely
    matters. An over-read only makes refusals rarer, never wrong ones more likely."""

    def __init__(self, window: float = 10.0) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        self.window = window
        self._done: deque[tuple[float, float]] = deque()  # (when settled, seconds it took)
        self._since: float | None = None

    def start(self, now: float) -> None:
        """The worker started consuming at `now` (a young worker divides by its age)."""
        self._since = now

    def settled(self, duration: float, now: float) -> None:
        """One delivery was settled at `now` after `duration` seconds of handling."""
        self._done.append((now, max(duration, 0.0)))
        if self._since is None:
            self._since = now - duration

    def mean_duration(self, now: float) -> float:
        """Mean seconds a settled delivery took within the window (0.0: none settled)."""
        self._forget(now)
        return sum(d for _, d in self._done) / len(self._done) if self._done else 0.0

    def _forget(self, now: float) -> None:
        while self._done and self._done[0][0] < now - self.window:
            self._done.popleft()

    def rate(self, now: float, concurrency: int) -> float:
        """Messages per second at `now`; 0.0 when nothing was settled within the window."""
        self._forget(now)
        if not self._done:
            return 0.0
        since = self._since if self._since is not None else self._done[0][0]
        span = min(self.window, max(now - since, 1e-3))
        done = len(self._done) / span
        mean = sum(d for _, d in self._done) / len(self._done)
        little = concurrency / mean if mean > 0 else done
        return max(done, little)


class BacklogTrend:
    """How fast a queue's backlog changes, from successive readings (messages/second)."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def read(self, backlog: int, now: float) -> float:
        """Record a reading at `now`; the change per second since the previous one."""
        last, self._last = self._last, (now, backlog)
        if last is None or now <= last[0]:
            return 0.0
        return (backlog - last[1]) / (now - last[0])


@dataclass(frozen=True, slots=True)
class _Entry:
    report: LoadReport
    received: float  # the follower's monotonic clock

    @property
    def stale_at(self) -> float:
        return self.received + STALE_INTERVALS * self.report.interval


@dataclass(frozen=True, slots=True)
class _QueueView:
    """A queue's fresh reports summed up, valid until the first of them goes stale."""

    latest: _Entry | None  # the freshest report (None: no fresh one)
    rate: float  # all fresh replicas together
    handling: float  # their mean handling time
    valid_until: float


class LoadBoard:
    """The latest report of every replica, as a follower received them (`received` and
    `now` on one monotonic clock: the senders' wall clocks never matter).

    A send asks `predicted_wait` for its type: the answer comes from a per-queue summary
    kept until a report arrives or one goes stale, so its cost does not grow with the
    number of replicas."""

    def __init__(self) -> None:
        self._replicas: dict[str, dict[str, _Entry]] = {}
        self._views: dict[str, _QueueView] = {}
        self._queues_of: dict[str, tuple[str, ...]] = {}

    def record(self, report: LoadReport, received: float) -> None:
        """Keep `report` as its replica's latest (and forget its queue's stale replicas)."""
        self._replicas.setdefault(report.queue, {})[report.replica] = _Entry(report, received)
        self._views.pop(report.queue, None)
        self._view(report.queue, received)
        for type_name in report.types:
            known = self._queues_of.get(type_name, ())
            if report.queue not in known:
                self._queues_of[type_name] = (*known, report.queue)

    def replicas(self, queue: str) -> int:
        """How many replicas of `queue` the board holds reports of (metrics, tests)."""
        return len(self._replicas.get(queue, {}))

    def predicted_wait(self, type_name: str, now: float) -> float | None:
        """Seconds until a `type_name` command sent at `now` is handled: its wait in the
        queue plus the mean handling time (`math.inf`: a backlog and no measured rate);
        None when no fresh report covers it."""
        worst: float | None = None
        for queue in self._queues_of.get(type_name, ()):
            view = self._view(queue, now)
            if view.latest is None:
                continue
            report = view.latest.report
            wait = (
                queue_wait(
                    report.backlog, report.backlog_trend, now - view.latest.received, view.rate
                )
                + view.handling
            )
            worst = wait if worst is None else max(worst, wait)
        return worst

    def _view(self, queue: str, now: float) -> _QueueView:
        view = self._views.get(queue)
        if view is not None and now <= view.valid_until:
            return view
        replicas = self._replicas.get(queue, {})
        for replica in [r for r, e in replicas.items() if now > e.stale_at]:
            del replicas[replica]  # gone quiet (stopped, or cut off): its rate no longer counts
        fresh = replicas.values()
        view = _QueueView(
            latest=max(fresh, key=lambda e: e.received, default=None),
            rate=sum(e.report.rate for e in fresh),
            handling=sum(e.report.handling for e in fresh) / len(fresh) if fresh else 0.0,
            valid_until=min((e.stale_at for e in fresh), default=math.inf),
        )
        self._views[queue] = view
        return view


def queue_wait(backlog: int, trend: float, age: float, rate: float) -> float:
    """Seconds until a message added now is started: the backlog read `age` seconds ago,
    carried forward along its trend (never below 0), drained at `rate` messages/second."""
    now_backlog = max(0.0, backlog + trend * max(age, 0.0))
    if now_backlog <= 0.0:
        return 0.0
    return now_backlog / rate if rate > 0 else math.inf


def refusal(wait: float | None, time_left: float, unknown: float) -> float | None:
    """None to send; else the `retry_after` (seconds) of a refusal: the message would wait
    `wait` seconds but must start within `time_left`. `retry_after` is when a send with the
    same time budget would fit if nothing more arrived (`wait - time_left`), or `unknown`
    when no rate is measured. A deadline already past is not refused here (no prediction
    can make it fit; the worker dead-letters it as `expired`, as without shedding)."""
    if wait is None or time_left <= 0 or wait <= time_left:
        return None
    return wait - time_left if math.isfinite(wait) else unknown
