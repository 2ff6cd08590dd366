"""Probes during a broker outage, through a TCP proxy the test owns: `/readyz` turns 503
while the broker is unreachable and 200 again once the worker has resubscribed; `/healthz`
(liveness) stays 200 all along, so an outage never restarts the pod."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from framework import Bus, Context, Worker
from framework.ops.observability import serve_worker_probes
from framework.settings import Settings
from framework.testing import BrokerAdmin
from tests.chaos.proxy import FaultProxy
from tests.integration.ops_service import Job
from tests.integration.test_metrics_probes import get


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll `check` (a probe, which is polled by nature) until True; seconds taken."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - probes are polled by nature
            await asyncio.sleep(0.1)
    return loop.time() - started


async def test_readyz_follows_broker_reachability_and_healthz_stays_alive(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Cut and refuse the broker: /readyz 503 within 5 s, /healthz 200; restore it:
    /readyz 200 again and the worker handles a new message."""
    handled = asyncio.Event()

    class Outage(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:
            handled.set()

    target = urlsplit(amqp_url)
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        settings = Settings(amqp_url=proxy.url(amqp_url), heartbeat=5)
        async with Bus.connect(settings=settings, service="tests") as bus:
            worker = Outage(bus)
            run = asyncio.create_task(worker.run())
            try:
                await worker.wait_ready()
                async with serve_worker_probes(worker, 0, host="127.0.0.1") as server:

                    async def status(path: str) -> int:
                        return (await get(server.port, path))[0]

                    assert (await status("/readyz"), await status("/healthz")) == (200, 200)
                    proxy.refusing = True
                    proxy.cut()
                    await within(5, lambda: _is(status("/readyz"), 503))
                    assert await status("/healthz") == 200
                    proxy.refusing = False
                    await within(30, lambda: _is(status("/readyz"), 200))
                    assert await status("/healthz") == 200
                    await broker_admin.publish_raw(
                        queue_name, b'{"job_id": "after"}', type=Job.type_name, message_id="after"
                    )
                    await asyncio.wait_for(handled.wait(), 20)
            finally:
                await worker.stop()
                await run
                await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected
