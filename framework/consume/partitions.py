"""Consuming an ordered worker's partition queues: one subscription per partition.

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
its queue for the next replica.

Everything here is above the broker port (`BrokerPort.subscribe`): the same code runs on
RabbitMQ and on the in-memory broker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from framework.consume.ordering import consumer_priorities
from framework.consume.worker_spec import WorkerSpec
from framework.wire.delivery import Incoming
from framework.wire.port import BrokerPort, OnDelivery, Subscription


async def subscribe_worker(
    port: BrokerPort, spec: WorkerSpec, on_message: OnDelivery
) -> Subscription:
    """The subscription of a worker: its queue, or all its partition queues if it is ordered
    (not started yet)."""
    queues = spec.topology.queues
    if spec.ordering is None:
        return await port.subscribe(queues[0], spec.prefetch, on_message)
    partitions = queues[: spec.ordering.partitions]
    return await PartitionedSubscription.open(port, partitions, on_message)


class PartitionedSubscription:
    """The subscriptions to all partition queues, started, paused and restored together."""

    def __init__(
        self, parts: Sequence[Subscription], gate: asyncio.Event, priorities: Sequence[int]
    ) -> None:
        self._parts = list(parts)
        self.priorities = list(priorities)  # this replica's x-priority per partition
        self._open = gate  # set while consuming; cleared: arrivals are parked
        self.prefetch = parts[0].prefetch
        self.resubscribe_needed = asyncio.Event()
        for part in self._parts:  # one event: any lost subscription restores them all
            part.resubscribe_needed = self.resubscribe_needed

    @classmethod
    async def open(
        cls, port: BrokerPort, queues: Sequence[Any], on_message: OnDelivery
    ) -> PartitionedSubscription:
        gate = asyncio.Event()

        async def gated(incoming: Incoming) -> None:
            if not gate.is_set():
                await gate.wait()  # parked: unacked, still the next of its partition
            await on_message(incoming)

        priorities = consumer_priorities(len(queues), random.random)
        parts = [
            await port.subscribe(queue, 1, gated, arguments={"x-priority": priority})
            for queue, priority in zip(queues, priorities, strict=True)
        ]
        return cls(parts, gate, priorities)

    @property
    def consuming(self) -> bool:
        return self._open.is_set() and any(part.consuming for part in self._parts)

    async def start(self, prefetch: int) -> None:
        """Subscribe to every partition with QoS = prefetch (per consumer), or resume:
        deliveries parked while paused go to the worker in the order they arrived."""
        self.prefetch = prefetch
        for part in self._parts:
            await part.start(prefetch)
        self._open.set()

    async def restart(self) -> None:
        """Subscribe again to every partition (see `Subscription.restart`)."""
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

    async def close(self) -> None:
        """Close every partition's channel: parked and unsettled deliveries go back."""
        for part in self._parts:
            await part.close()
