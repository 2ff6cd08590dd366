"""Every log line written while a delivery is handled carries that delivery's identity."""

from __future__ import annotations

import asyncio
import json

import pytest

from framework import Command, Context, Worker
from framework.ops.logs import configure_logging, reset_logging, trace_fields
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


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"


async def test_delivery_log_lines_carry_the_trace_id(
    test_bus: MemoryBus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Handler and framework lines of a delivery carry `trace_id` and `parent_span_id` from
    its traceparent, on every attempt: a log search finds the trace and back."""
    configure_logging("json", "info", force=True)
    try:

        class Traced(Worker):
            queue = "t.logs.traced"
            retry_base_delay = 0.01

            async def handle(self, msg: Charge, ctx: Context) -> None:
                ctx.log.info("charging", n=msg.n)
                if ctx.attempt == 1:
                    raise RuntimeError("gateway hiccup")

        worker = await test_bus.start_worker(Traced)
        await test_bus.send(Charge(n=1), traceparent=f"00-{TRACE_ID}-{SENDER_SPAN}-01")
        await asyncio.wait_for(test_bus.drain(), 5)
        await worker.stop()
    finally:
        lines = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        reset_logging()
    delivery = [r for r in lines if r["event"] in {"charging", "delivery.retry_scheduled"}]
    assert [r["event"] for r in delivery].count("charging") == 2
    assert {(r["trace_id"], r["parent_span_id"]) for r in delivery} == {(TRACE_ID, SENDER_SPAN)}


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "not-a-traceparent",
        f"00-{TRACE_ID.upper()}-{SENDER_SPAN}-01",
        f"00-{'0' * 32}-{SENDER_SPAN}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-{SENDER_SPAN}-01",
        f"00-{TRACE_ID}-{SENDER_SPAN}-01x",
    ],
)
def test_no_trace_fields_from_an_invalid_traceparent(traceparent: str | None) -> None:
    """A missing or malformed traceparent adds no trace fields (never a wrong id)."""
    assert trace_fields(traceparent) == {}


def test_trace_fields_of_a_later_traceparent_version() -> None:
    """A later version may append fields: its trace and parent ids are still read."""
    assert trace_fields(f"01-{TRACE_ID}-{SENDER_SPAN}-01-extra") == {
        "trace_id": TRACE_ID,
        "parent_span_id": SENDER_SPAN,
    }
