"""Scenario 3: the broker application restarts (stop_app / start_app) in the middle of a run.

This stops RabbitMQ for everyone on this machine: the outage is kept to a few seconds and
start_app always runs (finally), followed by await_startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

import pytest

from framework.testing import BrokerAdmin
from tests.chaos.harness import (
    Run,
    Sender,
    check,
    finish,
    rabbitmqctl,
    recovery,
    recovery_times,
    scale,
)

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

OUTAGE_S = 1.0  # beyond the seconds stop_app and start_app take themselves


@contextlib.asynccontextmanager
async def broker_stopped(phases: dict[str, float]) -> AsyncIterator[None]:
    """stop_app on entry; start_app + await_startup on exit, whatever happened."""
    began = time.monotonic()
    try:
        await rabbitmqctl("stop_app")
        phases["stop_app_s"] = time.monotonic() - began
        yield
    finally:
        began = time.monotonic()
        phases["start_app_at"] = time.time()
        await rabbitmqctl("start_app", timeout=120)
        await rabbitmqctl("await_startup", timeout=120)
        phases["start_app_s"] = time.monotonic() - began


@pytest.mark.timeout(scale(240, 900))
async def test_broker_restart_mid_run(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """Producer and two workers keep going across `rabbitmqctl stop_app` / `start_app`:
    every confirmed send is handled once in effect; sends during the outage time out and
    are retried with the same key by the producer."""
    run = chaos_run("3-broker-restart")
    total, restarts = scale(1000, 5000), scale(1, 3)
    rng = random.Random()
    back: list[float] = []  # moments start_app was issued
    outages: list[dict[str, float]] = []
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=2)
        await pool.start()
        try:
            sender = Sender(run, bus, concurrency=16, max_tries=60, retry_pause=0.5)
            sending = asyncio.create_task(
                sender.send_many(
                    range(total),
                    rate=total / (restarts * 25.0 + 5.0),
                    vary=lambda _: {"work_ms": rng.randint(5, 30)},
                )
            )
            for _ in range(restarts):
                await asyncio.sleep(3.0)
                down, phases = time.time(), dict[str, float]()
                async with broker_stopped(phases):
                    await asyncio.sleep(OUTAGE_S)
                back.append(phases.pop("start_app_at"))
                outages.append(
                    {
                        k: round(v, 1)
                        for k, v in {**phases, "down_total_s": time.time() - down}.items()
                    }
                )
                await asyncio.sleep(2.0)
            await sending
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(90, 300))
        finally:
            await pool.stop()
    # recovery: from `start_app` issued to the first message handled after that
    recoveries = recovery_times(run, back)
    run.figures.update(
        faults=f"{len(back)} x stop_app/start_app",
        outages=outages,
        send_errors=dict(sender.errors),
        **recovery(recoveries),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    assert pool.exits() == [], "a worker process died while the broker was down"
