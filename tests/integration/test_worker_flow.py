"""A worker handles each command exactly once, leaving its queue and DLQ empty."""

from __future__ import annotations

import asyncio
from collections import Counter

from framework import Bus, Command, Context, Worker
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names


class Ping(Command):
    type_name = "tests.flow.Ping"
    n: int


async def test_200_commands_handled_exactly_once(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """200 sent commands are each handled once; queue and DLQ are empty afterwards."""
    seen: Counter[int] = Counter()
    done = asyncio.Event()

    class PingWorker(Worker):
        queue = queue_name
        prefetch = 16

        async def handle(self, msg: Ping, ctx: Context) -> None:
            seen[msg.n] += 1
            if len(seen) == 200:
                done.set()

    worker = await worker_factory(PingWorker)
    keys = await asyncio.gather(*(bus.send(Ping(n=i)) for i in range(200)))
    assert len(set(keys)) == 200
    await asyncio.wait_for(done.wait(), 30)
    # stopped: every delivery settled and its ack flushed; one still unacked (a possible
    # duplicate) would be back in the queue, one delivered twice counted below
    await worker.stop()
    assert all(count == 1 for count in seen.values())
    assert worker.stats.handled == 200
    assert await broker_admin.depth(queue_name) == 0
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0
