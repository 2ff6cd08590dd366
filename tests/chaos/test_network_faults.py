"""Scenario 4: a TCP proxy between every client and the broker adds latency, stalls traffic
(half-open connections only heartbeats can detect) and cuts connections."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from framework.testing import BrokerAdmin
from tests.chaos.harness import Run, Sender, check, finish, recovery, recovery_times, scale
from tests.chaos.proxy import FaultProxy

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

HEARTBEAT = 2  # seconds; aiormq gives up after (heartbeat + 1) * 3 without a frame


@pytest.mark.timeout(scale(240, 900))
async def test_latency_half_open_stall_and_cuts_through_a_proxy(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin, amqp_url: str
) -> None:
    """Producer and two workers talk to the broker only through the proxy. Latency slows
    but loses nothing; a stall is detected by heartbeats and the clients reconnect; a cut
    is recovered from; the invariant holds."""
    run = chaos_run("4-proxy-latency-stall-cut")
    rounds = scale(1, 4)
    total = scale(1500, 6000)
    rng = random.Random()
    broker = urlsplit(amqp_url)
    faults: list[tuple[str, float]] = []
    stall_detected: list[float] = []
    async with FaultProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy:
        via_proxy = proxy.url(amqp_url)
        async with run.bus(via_proxy, publish_timeout=5.0, heartbeat=HEARTBEAT) as bus:
            await bus.declare(run.worker_cls)
            pool = run.pool(size=2, AMQP_URL=via_proxy, FRAMEWORK_HEARTBEAT=str(HEARTBEAT))
            await pool.start()
            try:
                sender = Sender(run, bus, concurrency=16, max_tries=40, retry_pause=0.3)
                sending = asyncio.create_task(
                    sender.send_many(
                        range(total),
                        rate=total / (rounds * 22.0 + 3.0),
                        vary=lambda _: {"work_ms": rng.randint(5, 30)},
                    )
                )
                for _ in range(rounds):
                    await asyncio.sleep(2.0)
                    faults.append(("latency", time.time()))
                    proxy.latency = 0.05
                    await asyncio.sleep(4.0)
                    proxy.latency = 0.0
                    faults.append(("stall", time.time()))
                    stalled = proxy.stall()
                    assert len(stalled) >= 6  # producer 2 + workers 2 each
                    stall_detected.append(
                        await proxy.wait_closed(stalled, timeout=(HEARTBEAT + 1) * 3 + 10)
                    )
                    await asyncio.sleep(3.0)
                    faults.append(("cut", time.time()))
                    assert proxy.cut() >= 6
                    await asyncio.sleep(3.0)
                await sending
                accounting = await finish(run, broker_admin, pool, settle_timeout=scale(90, 300))
            finally:
                await pool.stop()
    recoveries = {kind: [round(t, 2) for t in recovery_times(run, [at])] for kind, at in faults}
    run.figures.update(
        faults=f"{rounds} x (latency 50 ms 4 s, half-open stall, cut)",
        stall_detected_s=[round(s, 1) for s in stall_detected],
        proxy_connections=proxy.accepted,
        send_errors=dict(sender.errors),
        recovery_by_fault=recoveries,
        **recovery(recovery_times(run, [at for kind, at in faults if kind != "latency"])),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    assert pool.exits() == [], "a worker process died on a network fault"
    # heartbeats (not TCP) detected the half-open links, within the client's grace
    assert max(stall_detected) <= (HEARTBEAT + 1) * 3 + 5
