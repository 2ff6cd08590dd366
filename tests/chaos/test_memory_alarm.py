"""Scenario 6: a broker memory alarm while publishing.

The alarm blocks every publisher on this machine: it lasts a few seconds only and the
watermark is always restored (finally).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from framework.testing import BrokerAdmin
from tests.chaos import ledger
from tests.chaos.harness import Run, Sender, check, finish, rabbitmqctl, scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

PUBLISH_TIMEOUT = 2.0
NORMAL_WATERMARK = "0.4"


async def _mem_alarm() -> bool:
    # the management API's node view lags by seconds: ask the node itself
    return "memory" in await rabbitmqctl("-q", "eval", "rabbit_alarm:get_alarms().")


@contextlib.asynccontextmanager
async def memory_alarm(timings: dict[str, float]) -> AsyncIterator[None]:
    began = time.monotonic()
    try:
        await rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
        for _ in range(20):
            if await _mem_alarm():
                break
            await asyncio.sleep(0.1)
        timings["alarm_raised_s"] = time.monotonic() - began
        yield
    finally:
        await rabbitmqctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)
        timings["alarm_total_s"] = time.monotonic() - began


@pytest.mark.timeout(scale(180, 600))
async def test_memory_alarm_blocks_then_times_out_then_resumes(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """Before the alarm sends confirm; during it each send raises PublishTimeout within its
    bound (no hang); after it clears the producer re-sends the failed keys and new work, and
    every confirmed send is handled once in effect."""
    run = chaos_run("6-memory-alarm")
    before, during, after = scale(300, 3000), scale(20, 100), scale(300, 3000)
    timings: dict[str, float] = {}
    async with run.bus(publish_timeout=PUBLISH_TIMEOUT) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=1)
        await pool.start()
        try:
            sender = Sender(run, bus, concurrency=16)
            assert (await sender.send_many(range(before)))[ledger.CONFIRMED] == before

            blocked = Sender(run, bus, concurrency=during, max_tries=1)
            async with memory_alarm(timings):
                assert await _mem_alarm(), "the memory alarm did not go off"
                started = time.monotonic()
                outcome = await blocked.send_many(range(before, before + during))
                timings["blocked_sends_s"] = time.monotonic() - started
            errors = list(blocked.messages)

            # the alarm is over: the same keys again, then new work
            resumed = time.monotonic()
            retried = await sender.send_many(range(before, before + during))
            timings["resume_s"] = time.monotonic() - resumed
            assert (await sender.send_many(range(before + during, before + during + after)))[
                ledger.CONFIRMED
            ] == after
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(60, 300))
        finally:
            await pool.stop()
    run.figures.update(
        faults=f"memory alarm {timings['alarm_total_s']:.1f} s",
        during_alarm=dict(outcome),
        publish_timeout_s=PUBLISH_TIMEOUT,
        slowest_timeout_s=round(max(blocked.timeout_bounds, default=0.0), 2),
        retried_after=dict(retried),
        **{k: round(v, 2) for k, v in timings.items()},
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    # during the alarm: every send failed with a PublishTimeout, within its bound
    assert outcome == {ledger.FAILED: during}, outcome
    assert blocked.errors == {"PublishTimeout": during}, blocked.errors
    assert max(blocked.timeout_bounds) < PUBLISH_TIMEOUT + 1.0
    assert all("alarm" in m for m in errors), errors[:3]
    # after: the re-sent keys were confirmed and nothing confirmed was lost
    assert retried == {ledger.CONFIRMED: during}, retried
    assert accounting.handled_once == before + during + after
