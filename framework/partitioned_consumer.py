"""Consuming an ordered worker's partition queues: one `Consumer` per partition, one channel.

QoS on RabbitMQ is per consumer, so with prefetch 1 each partition has at most one delivery
in flight, and partitions run in parallel. Each partition queue has single-active-consumer:
of the replicas subscribed to it, the broker delivers to one; when it goes away, its
unacked delivery returns to the queue ahead of the rest and the next replica takes over.

Each replica subscribes with its own consumer priorities (`ordering.consumer_priorities`):
on RabbitMQ 4.x, where the highest-priority consumer is the active one, partitions spread
over the replicas, and one that joins takes some over; on 3.x the first subscriber keeps
them all and the others stand by.

Pausing (an open breaker, a stop) never cancels the subscriptions: cancelling the active
consumer of a single-active-consumer queue makes the broker activate the next replica at
once, which would then receive the partition's next message while this one still holds
the current one (its handler running, or retrying in place) - the order would break. So a
paused consumer *parks* what arrives instead: unacked, not handled, it stays the next of
its partition; a resume hands it to the worker, a closed channel returns it to the head of
its queue for the next replica (the channel cancels the parked callback tasks).

It offers what the worker and its breaker gate use of a `Consumer` (start, pause, restart,
`resubscribe_needed`), applied to every partition.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel

from framework.consumer import Consumer, OnMessage
from framework.delivery import Incoming
from framework.ordering import consumer_priorities
from framework.topology import QueueSpec
from framework.worker_spec import WorkerSpec


class PartitionedConsumer(Consumer):
    """The subscriptions to all partition queues, started, paused and restored together."""

    def __init__(
        self, channel: AbstractChannel, specs: Sequence[QueueSpec], on_message: OnMessage
    ) -> None:
        super().__init__(channel, specs[0], on_message)
        self._deliver = on_message
        self._open = asyncio.Event()  # set while consuming; cleared: arrivals are parked
        self.priorities = consumer_priorities(len(specs), random.random)
        self._parts = [
            Consumer(channel, spec, self._gated, {"x-priority": priority})
            for spec, priority in zip(specs, self.priorities, strict=True)
        ]
        for part in self._parts:  # one event: any lost subscription restores them all
            part.resubscribe_needed = self.resubscribe_needed

    @property
    def consuming(self) -> bool:
        return self._open.is_set() and any(part.consuming for part in self._parts)

    async def _gated(self, incoming: Incoming) -> None:
        if not self._open.is_set():
            await self._open.wait()  # parked: unacked, still the next of its partition
        await self._deliver(incoming)

    async def start(self, prefetch: int) -> None:
        """Subscribe to every partition with QoS = prefetch (per consumer), or resume:
        deliveries parked while paused go to the worker in the order they arrived."""
        self.prefetch = prefetch
        for part in self._parts:
            await part.start(prefetch)
        self._open.set()

    async def restart(self) -> None:
        """Subscribe again to every partition (see `Consumer.restart`)."""
        self.resubscribe_needed.clear()
        try:
            for part in self._parts:
                await part.restart()
        except BaseException:
            self.resubscribe_needed.set()
            raise

    async def pause(self) -> None:
        """Stop handing deliveries to the worker, keeping the subscriptions (see the module
        docstring): deliveries in flight finish and are acked; the next ones are parked."""
        self._open.clear()


def open_consumer(channel: AbstractChannel, spec: WorkerSpec, on_message: OnMessage) -> Consumer:
    """The consumer of a worker: its queue, or all its partition queues if it is ordered."""
    queues = spec.topology.queues
    if spec.ordering is None:
        return Consumer(channel, queues[0], on_message)
    return PartitionedConsumer(channel, queues[: spec.ordering.partitions], on_message)
