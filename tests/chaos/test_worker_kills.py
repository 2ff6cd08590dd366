"""Scenario 1: SIGKILL worker subprocesses mid-handler, at random moments, again and again."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from framework.testing import BrokerAdmin
from tests.chaos.harness import Run, Sender, check, finish, recovery, scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))


@pytest.mark.timeout(scale(180, 900))
async def test_sigkill_workers_mid_handler(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """Two workers (prefetch 8, handlers of 10-60 ms) are SIGKILLed at random moments while
    a producer sends; a supervisor restarts them. The invariant holds, no DLQ."""
    run = chaos_run("1-sigkill-workers")
    run.configure(CHAOS_PREFETCH="8")
    total, kills = scale(1500, 6000), scale(8, 40)
    rng = random.Random()
    faults: list[float] = []
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=2)
        await pool.start()
        try:
            sender = Sender(run, bus, concurrency=16)
            # paced so that the work outlasts `kills` kills (one every 0.2-1.0 s): unpaced,
            # fast workers finish before the faults are in
            sending = asyncio.create_task(
                sender.send_many(
                    range(total),
                    rate=total / (kills * 1.0 + 2.0),
                    vary=lambda _: {"work_ms": rng.randint(10, 60)},
                )
            )
            # keep killing while there is work in flight, at least `kills` times
            while len(faults) < kills or not sending.done():
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                if run.ledger.effect_count() >= total:
                    break
                faults.append(await pool.kill_random_ready(rng))
            await sending
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(90, 300))
        finally:
            await pool.stop()
    run.figures.update(
        faults=f"{len(faults)} SIGKILL",
        restarts=pool.restarts,
        send_errors=dict(sender.errors),
        **recovery(pool.recovery_times),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert len(faults) >= kills and pool.restarts >= kills
    assert accounting.handled_once == total
