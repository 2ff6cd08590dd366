"""A whole shutdown fits FRAMEWORK_SHUTDOWN_GRACE (+ `CLOSE_MARGIN`), even with a stalled
broker and a retry move in flight; what could not be settled goes back to the queue."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from framework.consume.shutdown import CLOSE_MARGIN
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from tests.chaos.proxy import FaultProxy
from tests.integration.cli_runner import REPO
from tests.integration.ops_service import Job
from tests.integration.stalling_service import StallingWorker
from tests.integration.test_metrics_probes import _free_port, get

GRACE = 2.0
PROCESS_MARGIN = 3.0  # interpreter exit, on a loaded machine


async def appears(path: Path, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)


@pytest.mark.timeout(60)  # ~5 s alone; more under load
async def test_sigterm_during_stalled_retry_move_exits_within_grace_and_loses_nothing(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str, tmp_path: Path
) -> None:
    """`framework run` behind a stalled proxy gets SIGTERM while moving a failed delivery to
    a retry queue: it exits within grace + margins, and the message is back in its queue."""
    target = urlsplit(amqp_url)
    port = _free_port()
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        env = {
            **os.environ,
            "AMQP_URL": proxy.url(amqp_url),
            "OPS_QUEUE": queue_name,
            "STALL_DIR": str(tmp_path),
            "FRAMEWORK_SHUTDOWN_GRACE": str(GRACE),
            "FRAMEWORK_METRICS_PORT": str(port),
            "FRAMEWORK_LOG_LEVEL": "warning",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework",
            "run",
            "tests.integration.stalling_service:StallingWorker",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await get(port, "/readyz"))[0] == 200:
                            break
                    except OSError:
                        pass  # not listening yet
                    await asyncio.sleep(0.1)
            await broker_admin.publish_raw(
                queue_name, b'{"job_id": "stall"}', type=Job.type_name, message_id="stall-1"
            )
            await appears(tmp_path / "entered")
            proxy.stall()  # both of the worker's connections: nothing reaches the broker
            (tmp_path / "go").touch()
            await appears(tmp_path / "raising")
            loop = asyncio.get_running_loop()
            started = loop.time()
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
            took = loop.time() - started
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    try:
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert took < GRACE + CLOSE_MARGIN + PROCESS_MARGIN, f"shutdown took {took:.1f}s"
        assert await broker_admin.wait_for_depth(queue_name, 1, timeout=20) == 1
        (back,) = await broker_admin.drain(queue_name)
        assert back.message_id == "stall-1"
    finally:
        tiers = build_spec(StallingWorker).policy.tiers_ms()
        await broker_admin.delete_worker_queues(queue_name, tiers)
