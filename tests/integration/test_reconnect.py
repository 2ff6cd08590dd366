"""After the broker drops our connections, the bus reconnects, re-declares and resumes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.request
import uuid
from urllib.parse import quote, urlsplit

from framework import Bus, Command, Context, Worker
from framework.testing import BrokerAdmin
from framework.wire import names


class Beat(Command):
    type_name = "tests.reconnect.Beat"
    n: int


def _management(method: str, path: str) -> object:
    base = os.environ.get("FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
    parts = urlsplit(base)
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port}{path}", method=method
    )
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


async def _close_connections_named(prefix: str, expected: int) -> int:
    """Close our connections once the management API lists them (its view lags a little)."""
    ours: list[str] = []
    for _ in range(100):
        connections = await asyncio.to_thread(_management, "GET", "/api/connections")
        assert isinstance(connections, list)
        ours = [
            c["name"]
            for c in connections
            if c.get("client_properties", {}).get("connection_name", "").startswith(prefix)
        ]
        if len(ours) >= expected:
            break
        await asyncio.sleep(0.2)
    for name in ours:
        await asyncio.to_thread(_management, "DELETE", f"/api/connections/{quote(name)}")
    return len(ours)


async def test_worker_resumes_and_topology_is_redeclared_after_connection_loss(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Connections force-closed by the broker come back; a deleted DLQ is re-declared;
    messages sent before and after are all handled."""
    service = f"reconnect-{uuid.uuid4().hex[:8]}"
    seen: set[int] = set()
    got_all = asyncio.Event()

    class BeatWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Beat, ctx: Context) -> None:
            seen.add(msg.n)
            if len(seen) == 20:
                got_all.set()

    async with Bus.connect(amqp_url, service=service) as bus:
        worker = BeatWorker(bus)
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            for n in range(10):
                await bus.send(Beat(n=n))
            await broker_admin.delete_queues(names.dlq_name(queue_name))
            assert await _close_connections_named(service, 2) == 2
            for n in range(10, 20):
                await bus.send(Beat(n=n))  # retried across the reconnect, not lost
            await asyncio.wait_for(got_all.wait(), 30)
            assert await broker_admin.depth(names.dlq_name(queue_name)) == 0  # exists again
        finally:
            await worker.stop()
            await run
            await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())
