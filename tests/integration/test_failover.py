"""A bus given every node of a cluster moves to a surviving node when its node stops.

The nodes are the test's own: a throwaway 3-node cluster of the broker under test
(tests/chaos/cluster.py: 3.10 `fwc1..3@localhost`, or 4.0 `rabbit4a..c@localhost` from the
scripts/broker4 root), never the shared node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit

import pytest

from framework import Bus, Command, Context, PublishTimeout, Worker
from framework.errors import PublishFailed
from tests.chaos.cluster import cluster_for


class Ping(Command):
    type_name = "tests.failover.Ping"
    n: int


def port_of(masked_url: str) -> int | None:
    return urlsplit(masked_url).port


async def send_until_confirmed(bus: Bus, command: Command, within: float) -> float:
    """Send as a producer would while the bus fails over: retry the same key until the
    broker confirms; returns when it did."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + within
    while True:
        try:
            await bus.send(command, idempotency_key=key, timeout=3.0)
            return time.monotonic()
        except (PublishTimeout, PublishFailed, ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.timeout(300)
async def test_three_url_bus_reconnects_to_another_node_when_its_node_stops() -> None:
    """Connected to node 1 of three, the bus (publisher and worker) continues on node 2 or 3
    after node 1's `stop_app`: the URL in use changes and a new command is handled."""
    handled: list[int] = []
    got = asyncio.Event()

    async with cluster_for() as cluster:
        urls = [cluster.url(i) for i in range(3)]

        class PingWorker(Worker):
            queue = f"t.failover.{uuid.uuid4().hex[:8]}"
            timeout = 5.0

            async def handle(self, msg: Ping, ctx: Context) -> None:
                handled.append(msg.n)
                got.set()

        async with Bus.connect(urls, service=f"failover-{uuid.uuid4().hex[:6]}") as bus:
            assert port_of(bus.masked_url) == cluster.nodes[0].amqp_port
            assert "guest:***@" in bus.masked_url
            worker = PingWorker(bus)
            task = asyncio.create_task(worker.run())
            try:
                await worker.wait_ready()
                await send_until_confirmed(bus, Ping(n=1), within=10)
                await asyncio.wait_for(got.wait(), 30)
                got.clear()
                await cluster.stop_app(cluster.nodes[0].name)
                await send_until_confirmed(bus, Ping(n=2), within=90)
                await asyncio.wait_for(got.wait(), 90)
                survivors = {n.amqp_port for n in cluster.nodes[1:]}
                assert port_of(bus.masked_url) in survivors, bus.masked_url
                assert handled == [1, 2]
            finally:
                await worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
