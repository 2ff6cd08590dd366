"""A worker for the shutdown-bound test, run by `framework run` in a subprocess: its handler
says when it started (`entered`), waits for the test's `go`, says `raising` and fails, so
the delivery is then being moved to a retry queue (through a proxy the test has stalled)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from framework import Context, Worker
from tests.integration.ops_service import Job

MARKERS = Path(os.environ.get("STALL_DIR", "/nonexistent"))


class StallingWorker(Worker):
    queue = os.environ.get("OPS_QUEUE", "tests.stall.unset")
    shutdown_grace = 60.0  # FRAMEWORK_SHUTDOWN_GRACE (settings) overrides this

    async def handle(self, msg: Job, ctx: Context) -> None:
        (MARKERS / "entered").touch()
        while not (MARKERS / "go").exists():  # noqa: ASYNC110 - the test is another process
            await asyncio.sleep(0.02)
        (MARKERS / "raising").touch()
        raise RuntimeError("fails once the broker is stalled: the retry move cannot confirm")
