"""What a worker tells its probes: `alive` (liveness) and `receiving` (readiness)."""

from __future__ import annotations

import asyncio

import pytest

from framework import Command, Context, Worker
from framework.testing import MemoryBus


class Tick(Command):
    type_name = "tests.probes.Tick"


class Ticker(Worker):
    queue = "probes.ticker"

    async def handle(self, msg: Tick, ctx: Context) -> None:
        return None


async def test_alive_and_receiving_while_running_neither_once_stopped() -> None:
    """Before run: alive (not stuck), not receiving; running: both; stopped: neither."""
    async with MemoryBus() as bus:
        worker = Ticker(bus)
        assert (worker.alive, worker.receiving) == (True, False)
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        assert (worker.alive, worker.receiving) == (True, True)
        await worker.stop()
        await run
        assert (worker.alive, worker.receiving) == (False, False)


async def test_probes_refuse_a_worker_on_the_in_memory_bus() -> None:
    """Probes report a RabbitMQ broker: a worker on the in-memory bus gets a clear error."""
    from framework.errors import ConfigurationError
    from framework.ops.observability import serve_worker_probes

    async with MemoryBus() as bus:
        with pytest.raises(ConfigurationError, match="RabbitMQ Bus"):
            async with serve_worker_probes(Ticker(bus), 0, host="127.0.0.1"):
                pass
