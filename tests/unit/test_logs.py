"""Every log line written while a delivery is handled carries that delivery's identity."""

from __future__ import annotations

import asyncio
import json

import pytest

from framework import Command, Context, Worker
from framework.logs import configure_logging, reset_logging
from framework.testing import MemoryBus


class Charge(Command):
    type_name = "tests.logs.Charge"
    n: int


async def test_handler_and_framework_logs_carry_the_delivery(
    test_bus: MemoryBus, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info", force=True)
    try:

        class Charger(Worker):
            queue = "t.logs.charge"
            retry_base_delay = 0.01

            async def handle(self, msg: Charge, ctx: Context) -> None:
                ctx.log.info("charging", n=msg.n)
                if ctx.attempt == 1:
                    raise RuntimeError("gateway hiccup")

        worker = await test_bus.start_worker(Charger)
        key = await test_bus.send(Charge(n=7), correlation_id="conv-1")
        await asyncio.wait_for(test_bus.drain(), 5)
        await worker.stop()
    finally:
        lines = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        reset_logging()
    charging = [r for r in lines if r["event"] == "charging"]
    retried = [r for r in lines if r["event"] == "delivery.retry_scheduled"]
    assert [r["attempt"] for r in charging] == [1, 2]
    assert len(retried) == 1
    for record in [*charging, *retried]:
        assert record["message_id"] == key
        assert record["correlation_id"] == "conv-1"
        assert record["queue"] == "t.logs.charge"
        assert record["service"] == test_bus.service
    # outside a delivery nothing is attached
    outside = [
        r
        for r in lines
        if r["event"] not in {"charging", "delivery.retry_scheduled"} and "message_id" in r
    ]
    assert all(r["event"].startswith(("delivery.", "idempotency.")) for r in outside)
