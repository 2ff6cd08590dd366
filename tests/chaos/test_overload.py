"""Scenario 7: a slow consumer under a producer ten times faster than it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from framework.testing import BrokerAdmin
from tests.chaos import ledger
from tests.chaos.harness import Run, Sender, check, finish, scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

PREFETCH = 4
WORK_MS = 100  # so the worker handles about PREFETCH / 0.1 s = 40 messages per second
MAX_LENGTH = 200
CONCURRENCY = 32
PAD = "x" * 4096  # 4 KiB per message: buffering everything would show in RSS


@pytest.mark.timeout(scale(180, 600))
async def test_slow_consumer_sheds_with_overloaded_and_stays_bounded(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """Producer at ~400/s against a worker doing ~40/s: the queue holds at most its max
    length, the rest is refused with Overloaded (never silently dropped, never handled), the
    worker's RSS stays flat (prefetch bounds what it takes), nothing crashes."""
    run = chaos_run("7-slow-consumer-overload")
    run.configure(CHAOS_PREFETCH=str(PREFETCH), CHAOS_MAX_LENGTH=str(MAX_LENGTH))
    handle_rate = PREFETCH * 1000 / WORK_MS
    send_rate = handle_rate * 10
    total = int(send_rate * scale(6, 60))
    rss: list[int] = []
    depths: list[int] = []
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=1)
        await pool.start()

        async def sample() -> None:
            while True:
                if (kib := pool.rss_kib(0)) is not None:
                    rss.append(kib)
                depths.append(await broker_admin.depth(run.queue))
                await asyncio.sleep(0.2)

        try:
            baseline = pool.rss_kib(0) or 0
            sampler = asyncio.create_task(sample())
            sender = Sender(run, bus, concurrency=CONCURRENCY)
            outcome = await sender.send_many(range(total), rate=send_rate, work_ms=WORK_MS, pad=PAD)
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(60, 300))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await pool.stop()
    run.figures.update(
        faults=f"send {send_rate:.0f}/s vs handle {handle_rate:.0f}/s",
        sends=dict(outcome),
        max_queue_depth=max(depths),
        max_length=MAX_LENGTH,
        rss_baseline_mib=round(baseline / 1024, 1),
        max_rss_mib=round(max(rss) / 1024, 1),
    )
    check(run, accounting)  # includes: nothing refused was handled
    assert outcome[ledger.REJECTED] > total / 2, outcome  # it really shed load
    assert outcome[ledger.CONFIRMED] >= MAX_LENGTH, outcome
    assert set(outcome) <= {ledger.CONFIRMED, ledger.REJECTED}, outcome
    assert accounting.handled_once == outcome[ledger.CONFIRMED]
    # RabbitMQ 3.10 quorum queues switch to reject-publish only once over the limit, so
    # publishes already in flight (up to the sender's concurrency) can still be admitted
    assert max(depths) <= MAX_LENGTH + CONCURRENCY, depths
    assert max(rss) - baseline < 30 * 1024, (baseline, max(rss))
    assert pool.exits() == [], "the worker crashed under overload"
