"""A store that stops answering (a proxy we own in front of PostgreSQL or Redis hangs):
the worker defers within the store-call bound, says so once per interval, reports not
ready, and once the store answers again handles everything, each key once."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from framework import Bus, Command, Context, Worker
from framework.ops.observability import serve_worker_probes
from framework.settings import Settings
from framework.testing import eventually
from tests.chaos.proxy import FaultProxy

StoreUrl = Callable[[str], str]
STORE_TIMEOUT = 0.5


class Job(Command):
    type_name = "tests.stall.Job"
    n: int


async def readyz(port: int) -> int:
    def fetch() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    return await asyncio.to_thread(fetch)


@pytest.mark.timeout(90)  # ~6 s alone; more under load
@pytest.mark.parametrize("store_kind", ["postgres", "redis"])
async def test_stalled_store_defers_reports_not_ready_and_recovers(
    amqp_url: str, store_kind: str, store_url: StoreUrl, worker_factory: Any, queue_name: str
) -> None:
    """Stalled store: deliveries are deferred within the bound (none held), /readyz is 503,
    one log line per interval; after it answers again every message is handled once."""
    effects: Counter[int] = Counter()

    class StoreWorker(Worker):
        queue = queue_name
        prefetch = 4
        retry_base_delay = 0.1
        retry_max_delay = 1.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            effects[msg.n] += 1

    target = store_url(store_kind).split("//", 1)[1].split("@")[-1].split("/")[0]
    host, port = target.rsplit(":", 1)
    settings = Settings(idempotency_timeout=STORE_TIMEOUT)
    async with FaultProxy(host, int(port)) as proxy:
        url = proxy.url(store_url(store_kind))
        async with Bus.connect(
            amqp_url, service="tests.stall", settings=settings, idempotency=url
        ) as bus:
            with capture_logs() as logs:
                worker = await worker_factory(StoreWorker, bus)
                async with serve_worker_probes(worker, 0, host="127.0.0.1") as probes:
                    for n in range(3):
                        await bus.send(Job(n=n))
                    await eventually(lambda: worker.stats.handled == 3, timeout=20)
                    assert await readyz(probes.port) == 200

                    proxy.hang()
                    for n in range(3, 13):
                        await bus.send(Job(n=n))
                    await eventually(lambda: worker.stats.retried >= 10, timeout=10)
                    assert not worker.store_health.healthy
                    assert await readyz(probes.port) == 503
                    stalled_for = 3.0
                    await asyncio.sleep(stalled_for)  # the outage goes on; deferrals back off
                    deferred = worker.stats.retried
                    proxy.unhang()

                    await eventually(lambda: worker.stats.handled == 13, timeout=30)
                    assert await readyz(probes.port) == 200
    assert effects == dict.fromkeys(range(13), 1)
    # without backoff 10 messages would cycle at 0.1-0.15 s: >= 200 deferrals in 3.5 s
    assert deferred < 10 * 8, deferred
    claim_failures = [e for e in logs if e["event"] == "idempotency.claim_failed"]
    assert 1 <= len(claim_failures) <= 3, len(claim_failures)


@pytest.mark.parametrize("store_kind", ["postgres", "redis"])
async def test_deferrals_back_off_while_the_store_is_down(
    amqp_url: str, store_kind: str, store_url: StoreUrl, worker_factory: Any, queue_name: str
) -> None:
    """A store that refuses connections fails each call at once: deferred messages come back
    at doubling delays (not at the base delay), and the failure is logged once per interval
    with a count, not once per deferral; nothing is lost or handled twice."""
    effects: Counter[int] = Counter()

    class StoreWorker(Worker):
        queue = queue_name
        prefetch = 16
        retry_base_delay = 0.1
        retry_max_delay = 1.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            effects[msg.n] += 1

    target = store_url(store_kind).split("//", 1)[1].split("@")[-1].split("/")[0]
    host, port = target.rsplit(":", 1)
    async with FaultProxy(host, int(port)) as proxy:
        url = proxy.url(store_url(store_kind))
        settings = Settings(idempotency_timeout=STORE_TIMEOUT)
        async with Bus.connect(
            amqp_url, service="tests.down", settings=settings, idempotency=url
        ) as bus:
            with capture_logs() as logs:
                worker = await worker_factory(StoreWorker, bus)
                proxy.refuse()
                for n in range(10):
                    await bus.send(Job(n=n))
                await eventually(lambda: worker.stats.retried >= 10, timeout=10)
                await asyncio.sleep(3.0)  # the outage goes on
                deferred = worker.stats.retried
                proxy.accept()
                await eventually(lambda: worker.stats.handled == 10, timeout=30)
    assert effects == dict.fromkeys(range(10), 1)
    # at the base delay (0.1-0.15 s a cycle) 10 messages would be deferred >= 200 times in
    # these ~3.5 s; doubling up to 1 s gives about 6 each
    assert deferred < 10 * 9, deferred
    claim_failures = [e for e in logs if e["event"] == "idempotency.claim_failed"]
    assert 1 <= len(claim_failures) <= 3, len(claim_failures)
    retry_lines = [e for e in logs if e["event"] == "delivery.retry_scheduled"]
    assert len(retry_lines) <= 3 * 10, len(retry_lines)
