"""Consuming an ordered worker's partition queues: one `Consumer` per partition, one channel.

QoS on RabbitMQ is per consumer, so with prefetch 1 each partition has at most one delivery
in flight, and partitions run in parallel. Each partition queue has single-active-consumer:
of the replicas subscribed to it, the broker delivers to one; when it goes away, its
unacked delivery returns to the queue ahead of the rest and the next replica takes over.

It offers what the worker and its breaker gate use of a `Consumer` (start, pause, restart,
`resubscribe_needed`), applied to every partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from aio_pika.abc import AbstractChannel

from framework.consumer import Consumer, OnMessage
from framework.topology import QueueSpec
from framework.worker_spec import WorkerSpec


class PartitionedConsumer(Consumer):
    """The subscriptions to all partition queues, started, paused and restored together."""

    def __init__(
        self, channel: AbstractChannel, specs: Sequence[QueueSpec], on_message: OnMessage
    ) -> None:
        super().__init__(channel, specs[0], on_message)
        self._parts = [Consumer(channel, spec, on_message) for spec in specs]
        for part in self._parts:  # one event: any lost subscription restores them all
            part.resubscribe_needed = self.resubscribe_needed

    @property
    def consuming(self) -> bool:
        return any(part.consuming for part in self._parts)

    async def start(self, prefetch: int) -> None:
        """Subscribe to every partition with QoS = prefetch (per consumer)."""
        self.prefetch = prefetch
        for part in self._parts:
            await part.start(prefetch)

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
        """Stop receiving on every partition; deliveries in flight can still be acked."""
        for part in self._parts:
            await part.pause()


def open_consumer(channel: AbstractChannel, spec: WorkerSpec, on_message: OnMessage) -> Consumer:
    """The consumer of a worker: its queue, or all its partition queues if it is ordered."""
    queues = spec.topology.queues
    if spec.ordering is None:
        return Consumer(channel, queues[0], on_message)
    return PartitionedConsumer(channel, queues[: spec.ordering.partitions], on_message)
