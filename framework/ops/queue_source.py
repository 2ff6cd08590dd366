"""Where queue statistics come from: the management API when it answers, else AMQP.

The AMQP fallback passively declares known names (a worker queue, its DLQ and its retry
tiers): depth and consumers are exact, unacked and rates are unavailable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractConnection

from framework.errors import ConfigurationError, UnknownQueue
from framework.ops.management import ManagementApi, ManagementUnavailable
from framework.ops.queue_stats import (
    DEFAULT_TARGET_DRAIN,
    QueueSample,
    QueueStats,
    Source,
    group,
    matches,
    schedule_row,
    worker_queue_names,
)
from framework.publish.scheduling import stages
from framework.resilience.backoff import RetryPolicy
from framework.wire import names
from framework.wire.topology import Topology

ConnectionGetter = Callable[[], Awaitable[AbstractConnection]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The rows of one read, and why rates are missing when the fallback was used."""

    rows: list[QueueStats]
    note: str | None = None


async def read_stats(
    management: ManagementApi | None,
    connection: ConnectionGetter,
    queues: Sequence[str] = (),
    *,
    pattern: str | None = None,
    target_drain: float = DEFAULT_TARGET_DRAIN,
    retry_queues: Mapping[str, Sequence[str]] | None = None,
) -> Snapshot:
    """Stats for the named worker queues (all framework queues if none are named).

    Raises `UnknownQueue` for a named queue that does not exist.
    """
    note = "management API not configured"
    if management is not None:
        try:
            samples = await management.queues()
        except ManagementUnavailable as exc:
            note = str(exc)
        else:
            present = {s.name for s in samples}
            chosen = _worker_queues(queues) or worker_queue_names(present)
            if all(q in present for q in chosen):  # else: let the broker say what is missing
                chosen = [q for q in chosen if matches(q, pattern)]
                rows = group(samples, chosen, "management", target_drain)
                if _wants_schedule(queues, pattern):
                    rows += _schedule_rows(samples, "management", named=bool(queues))
                return Snapshot(rows)
            note = "some queues are not (yet) known to the management API"
    if not queues:
        raise ConfigurationError(
            f"{note}; without it the queues cannot be listed: name them, "
            "e.g. `framework queues orders`"
        )
    chosen = [q for q in _worker_queues(queues) if matches(q, pattern)]
    samples = await _passive_samples(await connection(), chosen, retry_queues or {})
    rows = group(samples, chosen, "amqp", target_drain)
    if _wants_schedule(queues, pattern):
        countdown = await _passive_schedule_samples(await connection())
        rows += _schedule_rows(countdown, "amqp", named=True)
    return Snapshot(rows, note)


def _worker_queues(queues: Sequence[str]) -> list[str]:
    return [q for q in queues if q != names.SCHEDULE_ROW]


def _wants_schedule(queues: Sequence[str], pattern: str | None) -> bool:
    """The `fw.schedule` row: when named, or when listing everything it matches."""
    return names.SCHEDULE_ROW in queues or (not queues and matches(names.SCHEDULE_ROW, pattern))


def _schedule_rows(
    samples: Sequence[QueueSample], source: Source, *, named: bool
) -> list[QueueStats]:
    row = schedule_row(samples, source)
    if row is None and named:
        raise UnknownQueue(
            f"unknown queue {names.SCHEDULE_ROW!r}: no scheduled send was made on this vhost yet "
            "(its queues fw.schedule.wait.* are declared by the first `send(..., delay=...)`)"
        )
    return [] if row is None else [row]


async def _passive_schedule_samples(connection: AbstractConnection) -> list[QueueSample]:
    samples = []
    for stage in stages():
        sample = await _passive(connection, stage.queue)
        if sample is not None:
            samples.append(sample)
    return samples


async def _passive_samples(
    connection: AbstractConnection, queues: Iterable[str], retry_queues: Mapping[str, Sequence[str]]
) -> list[QueueSample]:
    samples = []
    for queue in queues:
        main = await _passive(connection, queue)
        if main is None:
            raise UnknownQueue(f"unknown queue {queue!r}: it does not exist on the broker")
        samples.append(main)
        companions = retry_queues.get(queue) or default_retry_queues(queue)
        for name in (names.dlq_name(queue), *companions):
            sample = await _passive(connection, name)
            if sample is not None:
                samples.append(sample)
    return samples


async def _passive(connection: AbstractConnection, name: str) -> QueueSample | None:
    """Depth and consumers of `name`, or None if it does not exist (its channel closes)."""
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            declared = await channel.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None
    result = declared.declaration_result
    return QueueSample(name, ready=result.message_count or 0, consumers=result.consumer_count or 0)


def default_retry_queues(queue: str) -> list[str]:
    """The delay tiers a worker with default retry settings has (the fallback's best guess)."""
    return [names.retry_queue_name(queue, tier) for tier in RetryPolicy().tiers_ms()]


def declared_retry_queues(topologies: Iterable[Topology], queue: str) -> list[str]:
    """The delay tiers of `queue` among topologies this process declared."""
    return [
        spec.name
        for topology in topologies
        for spec in topology.queues
        if ".retry." in spec.name and names.owner_queue(spec.name) == queue
    ]
