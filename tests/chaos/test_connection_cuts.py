"""Scenario 2: the broker force-closes every client connection, several times, mid-run."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from framework.testing import BrokerAdmin
from tests.chaos.harness import (
    Run,
    Sender,
    check,
    close_connections,
    finish,
    recovery,
    recovery_times,
    scale,
)

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))


@pytest.mark.timeout(scale(180, 900))
async def test_force_closed_connections_of_publisher_and_workers(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """Management API DELETE /api/connections/<name> on the producer's two connections and
    both workers' two connections each, every ~2 s while sending; everyone reconnects by
    themselves, and the invariant holds."""
    run = chaos_run("2-connection-closes")
    total, rounds = scale(2000, 8000), scale(4, 15)
    rate = total / (rounds * 2.0 + 2.0)
    rng = random.Random()
    faults: list[float] = []
    closed: list[int] = []
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=2)
        await pool.start()
        try:
            sender = Sender(run, bus, concurrency=16)
            sending = asyncio.create_task(
                sender.send_many(
                    range(total), rate=rate, vary=lambda _: {"work_ms": rng.randint(5, 30)}
                )
            )
            for _ in range(rounds):
                await asyncio.sleep(rng.uniform(1.5, 2.5))
                faults.append(time.time())
                # producer: publish + consume connection; workers: two each
                closed.append(await close_connections(run.prefix, expected=6))
            await sending
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(60, 300))
        finally:
            await pool.stop()
    recoveries = recovery_times(run, faults)
    run.figures.update(
        faults=f"{len(faults)} x close all ({sum(closed)} connections)",
        send_errors=dict(sender.errors),
        **recovery(recoveries),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    assert all(n >= 6 for n in closed), closed  # every round found all six connections
    assert pool.exits() == [], "a worker process died on a connection loss"
