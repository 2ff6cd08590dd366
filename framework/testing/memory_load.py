"""Shedding by forecast on the in-memory broker: a `LoadFollower` fed from `fw.load`.

The workers of a `MemoryBus` with `shed_by_forecast` on report through the same
`framework.load_status.LoadReporter` as on RabbitMQ (their publishes and passive declares go
to the `MemoryBroker`); this binds a queue of the bus to `fw.load` and hands each report to
the bus's follower, so `send` refuses exactly as `Bus.send` does. Report intervals,
freshness and deadlines run on the real clock (as deadlines do on the in-memory bus).
"""

from __future__ import annotations

import os
import time

from framework import names
from framework.load_status import LOAD_TOPOLOGY, LoadFollower
from framework.testing.memory_broker import MemoryBroker, MemoryChannel, MemoryDelivery
from framework.topology import BindingSpec, Topology


class MemoryLoadFeed:
    """The follower's queue on a `MemoryBroker`: declared, bound and consumed by `start`,
    removed by `close`."""

    def __init__(self, broker: MemoryBroker, follower: LoadFollower) -> None:
        self._broker = broker
        self._follower = follower
        self._queue = f"{follower.queue_name}.{os.urandom(2).hex()}"
        self._channel: MemoryChannel | None = None

    def start(self) -> None:
        self._broker.apply(LOAD_TOPOLOGY)
        self._broker.ensure_queue(self._queue, {})
        self._broker.apply(Topology(bindings=(BindingSpec(self._queue, names.LOAD_EXCHANGE, "#"),)))
        self._channel = self._broker.channel(prefetch=2**31 - 1)
        self._broker.add_consumer(self._queue, self._on_report, self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._broker.delete_queue(self._queue)
            self._channel = None

    async def _on_report(self, delivery: MemoryDelivery) -> None:
        await delivery.ack()  # reports are disposable: taken at once, like no-ack
        self._follower.receive(delivery.body, time.monotonic())
