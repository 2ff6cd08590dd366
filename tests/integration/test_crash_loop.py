"""A message that kills the worker process on every delivery is stopped by the delivery limit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from framework import Bus
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.crashing_service import CrashingWorker, Task

REPO = Path(__file__).resolve().parents[2]


async def _start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework",
        "run",
        "tests.integration.crashing_service:CrashingWorker",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.timeout(120)  # ~23 s alone; more under load
async def test_crash_looping_poison_ends_in_dlq_rest_handled(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str, tmp_path: Path
) -> None:
    """`framework run` worker os._exits on one poison; restarted in a loop, the poison ends in
    the DLQ by the broker's delivery limit and every healthy message is handled once."""
    effects = tmp_path / "effects.txt"
    effects.touch()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "CRASH_QUEUE": queue_name,
        "CRASH_EFFECTS": str(effects),
        "FRAMEWORK_LOG_FORMAT": "json",
    }
    worker_cls = type("CrashingWorkerHere", (CrashingWorker,), {"queue": queue_name})
    healthy = [f"ok{i}" for i in range(20)]
    async with Bus.connect(amqp_url, service="tests") as bus:
        await bus.declare(worker_cls)
        for task_id in healthy[:10]:
            await bus.send(Task(task_id=task_id))
        poison_key = await bus.send(Task(task_id="poison", crash=True))
        for task_id in healthy[10:]:
            await bus.send(Task(task_id=task_id))

    crashes = 0
    dlq = names.dlq_name(queue_name)
    try:
        for _ in range(8):
            process = await _start_worker(env)
            try:
                code = await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                # Still running: it got past the poison. Wait for the rest, then stop it.
                await broker_admin.wait_for_depth(queue_name, 0, timeout=20)
                for _ in range(100):
                    if len(effects.read_text().split()) >= len(healthy):
                        break
                    await asyncio.sleep(0.1)
                process.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(process.wait(), timeout=30) == 0
                break
            assert code == 3, (await process.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
            crashes += 1
        else:
            raise AssertionError("worker never got past the poison message")

        assert 1 <= crashes <= CrashingWorker.delivery_limit + 1
        handled = effects.read_text().split()
        assert sorted(handled) == sorted(healthy)
        dead = await broker_admin.drain(dlq)
        assert [m.message_id for m in dead] == [poison_key]
        [death] = dead[0].headers[names.X_DEATH]
        assert death["reason"] == "delivery_limit"
    finally:
        spec = build_spec(worker_cls)
        await broker_admin.delete_worker_queues(queue_name, spec.policy.tiers_ms())
