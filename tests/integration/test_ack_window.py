"""Coalesced acks widen the handled-but-unacked window; a crash in it is absorbed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from framework import Bus
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin, eventually
from tests.integration.acking_service import HoldingAcksWorker, Record

REPO = Path(__file__).resolve().parents[2]


async def _worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework",
        "run",
        "tests.integration.acking_service:HoldingAcksWorker",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_sigkill_after_handling_is_absorbed_by_idempotency(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str, tmp_path: Path
) -> None:
    """Handled but not yet acked when SIGKILLed: the broker redelivers, and the shared
    (SQLite) idempotency store makes the restarted worker skip them: effects once each."""
    effects = tmp_path / "effects.txt"
    effects.touch()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "ACKWINDOW_QUEUE": queue_name,
        "ACKWINDOW_EFFECTS": str(effects),
        "FRAMEWORK_IDEMPOTENCY_URL": f"sqlite:///{tmp_path / 'keys.sqlite3'}",
    }
    worker_cls = type("Here", (HoldingAcksWorker,), {"queue": queue_name})
    try:
        async with Bus.connect(amqp_url, service="tests") as bus:
            await bus.declare(worker_cls)
            await bus.send_many([Record(n=n) for n in range(20)])

        first = await _worker(env)
        await eventually(lambda: len(effects.read_text().split()) == 20, timeout=30)
        assert await broker_admin.depth(queue_name) == 0  # all delivered, acks still held
        first.kill()
        await first.wait()
        assert await broker_admin.wait_for_depth(queue_name, 20, timeout=30) == 20

        second = await _worker(env)
        await broker_admin.wait_for_depth(queue_name, 0, timeout=30)
        await asyncio.sleep(1.0)  # let it see (and skip) every redelivery
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
        assert sorted(int(n) for n in effects.read_text().split()) == list(range(20))
        assert await broker_admin.depth(queue_name) == 0  # the held acks were flushed on stop
    finally:
        await broker_admin.delete_worker_queues(
            queue_name, build_spec(worker_cls).policy.tiers_ms()
        )
