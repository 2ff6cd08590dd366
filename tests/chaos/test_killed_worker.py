"""A worker process SIGKILLed while holding an idempotency claim does not block the key."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from framework import Bus, Command, Context, Worker
from framework.testing import eventually
from framework.testing.pytest_plugin import WorkerFactory
from tests.chaos.harness import scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# The worker process: same queue and settings as the survivor; its handler hangs.
DOOMED = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from framework import Bus, Command, Context, Worker

    QUEUE, AMQP, STORE, MARKER = sys.argv[1:5]

    class Job(Command):
        type_name = "tests.chaos.killed.Job"
        n: int

    class JobWorker(Worker):
        queue = QUEUE
        timeout = 1.0
        retry_base_delay = 0.5
        retry_max_delay = 4.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            Path(MARKER).write_text(ctx.message_id)
            await asyncio.Event().wait()

    async def main() -> None:
        async with Bus.connect(AMQP, service="doomed", idempotency=STORE) as bus:
            await JobWorker(bus).run()

    asyncio.run(main())
""")


class Job(Command):
    type_name = "tests.chaos.killed.Job"
    n: int


async def test_sigkilled_claim_holder_is_taken_over_after_lease(
    amqp_url: str, worker_factory: WorkerFactory, queue_name: str, tmp_path: Path
) -> None:
    """The survivor finds the key busy while the dead process's lease runs (timeout + 30 s),
    then handles the message exactly once."""
    effects: Counter[int] = Counter()

    class JobWorker(Worker):
        queue = queue_name
        timeout = 1.0
        retry_base_delay = 0.5
        retry_max_delay = 4.0

        async def handle(self, msg: Job, ctx: Context) -> None:
            effects[msg.n] += 1

    script, marker = tmp_path / "doomed.py", tmp_path / "claimed"
    script.write_text(DOOMED)
    async with Bus.connect(amqp_url, service="tests", idempotency=REDIS_URL) as bus:
        await bus.declare(JobWorker)
        key = await bus.send(Job(n=1))
        doomed = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            queue_name,
            amqp_url,
            REDIS_URL,
            str(marker),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await eventually(marker.exists, timeout=30)
        finally:
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        killed_at = time.monotonic()
        assert marker.read_text() == key
        survivor = await worker_factory(JobWorker, bus)
        await eventually(lambda: survivor.stats.handled == 1, timeout=60)
        await survivor.stop()  # before its Bus closes
        assert time.monotonic() - killed_at > 25  # it waited for the lease, as it must
        assert effects == {1: 1}
        assert survivor.stats.retried >= 1
