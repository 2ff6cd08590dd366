"""Queue statistics as data: raw per-queue samples grouped into one row per worker queue.

A worker queue `Q` is shown with its companions: the delay tiers `Q.retry.*` (summed into
`retry`) and `Q.dlq`; the scheduled-send countdown `fw.schedule.wait.*` is one row of its own,
`fw.schedule` (summed into `scheduled`). Grouping, filtering and trend arrows are pure;
fetching the samples is `framework.ops.queue_source`'s job.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from framework.ops.scaling import drain_seconds, format_duration, suggested_replicas
from framework.wire import names

Source = Literal["management", "amqp"]

DEFAULT_TARGET_DRAIN = 60.0


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One broker queue as read from the management API or a passive declare.

    `unacked` and the rates are None when the source cannot tell (passive declares).
    """

    name: str
    ready: int
    unacked: int | None = None
    consumers: int = 0
    publish_rate: float | None = None
    deliver_rate: float | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One worker queue with its retry tiers and DLQ: what `framework queues` shows."""

    name: str
    ready: int
    unacked: int | None
    consumers: int
    retry: int
    dlq: int
    publish_rate: float | None
    deliver_rate: float | None
    drain_seconds: float | None
    suggested_replicas: int | None
    source: Source
    # commands sent with a delay, waiting in the countdown (the `fw.schedule` row; worker
    # queues show 0: a scheduled command names its type, not its queue, until it is due)
    scheduled: int = 0

    @property
    def rates_available(self) -> bool:
        return self.publish_rate is not None and self.deliver_rate is not None

    @property
    def drain(self) -> str:
        """The drain time for humans: `42s`, `∞` when growing, `n/a` without rates."""
        return format_duration(self.drain_seconds)

    def as_json(self) -> dict[str, Any]:
        """The `--json` object: the contract keys first, then extras (no infinities)."""
        drain = self.drain_seconds
        return {
            "name": self.name,
            "ready": self.ready,
            "unacked": self.unacked,
            "consumers": self.consumers,
            "retry": self.retry,
            "dlq": self.dlq,
            "publish_rate": self.publish_rate,
            "deliver_rate": self.deliver_rate,
            "drain_seconds": None if drain is None or math.isinf(drain) else round(drain, 1),
            "drain": self.drain,
            "suggested_replicas": self.suggested_replicas,
            "rates_available": self.rates_available,
            "source": self.source,
            "scheduled": self.scheduled,
        }


def worker_queue_names(all_names: Iterable[str]) -> list[str]:
    """Framework worker queues among broker queue names: those that have a `.dlq` companion."""
    present = set(all_names)
    return sorted(
        n for n in present if not names.is_companion_queue(n) and names.dlq_name(n) in present
    )


def matches(name: str, pattern: str | None) -> bool:
    """`--filter`: a glob (`orders*`) when it has wildcards, else a substring match."""
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def group(
    samples: Sequence[QueueSample],
    queues: Sequence[str],
    source: Source,
    target_drain: float = DEFAULT_TARGET_DRAIN,
) -> list[QueueStats]:
    """One `QueueStats` per name in `queues`, folding in its retry tiers and DLQ.

    Raises KeyError for a worker queue missing from `samples`; missing companions count 0.
    """
    by_name = {s.name: s for s in samples}
    companions: dict[str, list[QueueSample]] = {}
    for sample in samples:
        if ".retry." in sample.name:
            companions.setdefault(names.owner_queue(sample.name), []).append(sample)
    rows = []
    for queue in queues:
        main = by_name[queue]
        dlq = by_name.get(names.dlq_name(queue))
        retry = sum(s.ready + (s.unacked or 0) for s in companions.get(queue, []))
        rows.append(_row(main, retry, dlq.ready if dlq else 0, source, target_drain))
    return rows


def schedule_row(samples: Sequence[QueueSample], source: Source) -> QueueStats | None:
    """The `fw.schedule` row: every scheduled command waiting in the countdown's queues
    (`framework.publish.scheduling`); None if no bus ever scheduled a send on this vhost."""
    waiting = [s for s in samples if s.name.startswith(names.SCHEDULE_QUEUE_PREFIX)]
    if not waiting:
        return None
    unacked = [s.unacked for s in waiting]
    return QueueStats(
        name=names.SCHEDULE_ROW,
        ready=0,
        unacked=None if None in unacked else 0,
        consumers=0,
        retry=0,
        dlq=0,
        publish_rate=None,
        deliver_rate=None,
        drain_seconds=None,
        suggested_replicas=None,
        source=source,
        scheduled=sum(s.ready + (s.unacked or 0) for s in waiting),
    )


def _row(
    main: QueueSample, retry: int, dlq: int, source: Source, target_drain: float
) -> QueueStats:
    per_consumer = (
        main.deliver_rate / main.consumers
        if main.deliver_rate is not None and main.consumers > 0 and main.deliver_rate > 0
        else None
    )
    return QueueStats(
        name=main.name,
        ready=main.ready,
        unacked=main.unacked,
        consumers=main.consumers,
        retry=retry,
        dlq=dlq,
        publish_rate=main.publish_rate,
        deliver_rate=main.deliver_rate,
        drain_seconds=drain_seconds(main.ready, main.publish_rate, main.deliver_rate),
        suggested_replicas=suggested_replicas(
            backlog=main.ready,
            arrival_rate=main.publish_rate,
            per_consumer_rate=per_consumer,
            target_drain=target_drain,
        ),
        source=source,
    )


def trend(previous: int | None, current: int) -> str:
    """Arrow for `--watch`: ↑ backlog grew since the last refresh, ↓ shrank, → same, · first."""
    if previous is None:
        return "·"
    if current > previous:
        return "↑"
    if current < previous:
        return "↓"
    return "→"


def backlog(row: QueueStats) -> int:
    """What the trend arrow follows: messages waiting or in flight in the queue and its tiers."""
    return row.ready + (row.unacked or 0) + row.retry + row.scheduled
