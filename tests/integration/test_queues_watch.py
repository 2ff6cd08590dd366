"""`framework queues --watch` redraws a live table under a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import sys
import time

from framework import Bus, Context, Worker
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.cli_runner import DEAD_MANAGEMENT, REPO
from tests.integration.ops_service import Job


def watch(amqp_url: str, queue: str, seconds: float) -> tuple[int, str]:
    """Run `queues --watch 0.5 QUEUE` on a pty for `seconds`, then Ctrl-C; return the screen."""
    master, slave = pty.openpty()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "COLUMNS": "160",
        "LINES": "40",
        "TERM": "xterm-256color",
        "FRAMEWORK_MANAGEMENT_URL": DEAD_MANAGEMENT,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", "queues", "--watch", "0.5", queue],
        cwd=REPO,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536) if _readable(master) else b""
            except OSError:
                break
            output += chunk
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=15)
        while _readable(master):
            try:
                output += os.read(master, 65536)
            except OSError:
                break
    finally:
        os.close(master)
    return code, output.decode(errors="replace")


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0.1)[0])


async def test_watch_redraws_with_trend_arrows(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """At least two refreshes: the table appears repeatedly, with a trend arrow after the
    first; Ctrl-C leaves cleanly with exit 0."""

    class Idle(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:  # pragma: no cover
            pass

    await bus.declare(Idle)
    try:
        await broker_admin.publish_raw(queue_name, b"{}", type=Job.type_name)
        await broker_admin.publish_raw(names.dlq_name(queue_name), b"{}")
        code, screen = await asyncio.to_thread(watch, amqp_url, queue_name, 4.0)
        assert code == 0, screen[-2000:]
        assert screen.count("framework queues") >= 3, screen[-2000:]
        assert queue_name in screen
        assert "→" in screen  # unchanged backlog between refreshes
        assert "Traceback" not in screen
    finally:
        await broker_admin.delete_worker_queues(queue_name, Idle(bus).spec.policy.tiers_ms())
