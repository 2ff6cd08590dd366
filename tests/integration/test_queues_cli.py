"""`framework queues` and `bus.queue_stats` report exact depths, with and without management."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from framework import Bus, Command, Context, Worker
from framework.ops.queue_source import default_retry_queues
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.cli_runner import DEAD_MANAGEMENT, framework, framework_json


class Parcel(Command):
    type_name = "tests.queues.Parcel"
    n: int


async def _fill(bus: Bus, admin: BrokerAdmin, queue: str) -> None:
    """7 ready in Q, 2 in Q.dlq, 1 waiting in the longest default retry tier."""
    for n in range(7):
        await bus.send(Parcel(n=n))
    for _ in range(2):
        await admin.publish_raw(names.dlq_name(queue), b"{}", type=Parcel.type_name)
    await admin.publish_raw(names.retry_queue_name(queue, 256_000), b"{}", type=Parcel.type_name)


def _worker(queue_name: str) -> type[Worker]:
    class ParcelWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Parcel, ctx: Context) -> None:
            raise AssertionError("never consumed in these tests")

    return ParcelWorker


async def _poll(
    amqp_url: str, queue: str, want: dict[str, int], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Management statistics lag by ~5 s: poll until they show the expected numbers."""
    row: dict[str, Any] = {}
    for _ in range(40):
        (row,) = await asyncio.to_thread(
            framework_json, amqp_url, "queues", "--json", queue, env=env
        )
        if all(row[k] == v for k, v in want.items()):
            return row
        await asyncio.sleep(0.5)
    return row


@pytest.mark.timeout(120)  # management stats lag ~5 s
async def test_json_depths_from_management_api(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """queues --json shows 7 ready, 2 in the DLQ and 1 retrying, with rates, via management."""
    worker = _worker(queue_name)
    await bus.declare(worker)
    try:
        await _fill(bus, broker_admin, queue_name)
        row = await _poll(amqp_url, queue_name, {"ready": 7, "dlq": 2, "retry": 1})
        assert (row["ready"], row["dlq"], row["retry"], row["unacked"], row["consumers"]) == (
            7,
            2,
            1,
            0,
            0,
        )
        assert row["source"] == "management" and row["rates_available"]
        listed = await asyncio.to_thread(
            framework_json, amqp_url, "queues", "--json", "--filter", queue_name
        )
        assert [r["name"] for r in listed] == [queue_name]
    finally:
        await _cleanup(broker_admin, queue_name)


async def test_json_depths_via_amqp_when_management_is_down(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """With the management API on a dead port, passive declares give the same depths."""
    worker = _worker(queue_name)
    await bus.declare(worker)
    try:
        await _fill(bus, broker_admin, queue_name)
        env = {"FRAMEWORK_MANAGEMENT_URL": DEAD_MANAGEMENT}
        result = await asyncio.to_thread(
            framework, amqp_url, "queues", "--json", queue_name, env=env
        )
        assert result.returncode == 0, result.stderr
        assert "rates unavailable" in result.stderr and "guest:guest" not in result.stderr
        (row,) = json.loads(result.stdout)
        assert (row["ready"], row["dlq"], row["retry"], row["consumers"]) == (7, 2, 1, 0)
        assert row["source"] == "amqp" and row["publish_rate"] is None
        assert row["unacked"] is None
    finally:
        await _cleanup(broker_admin, queue_name)


@pytest.mark.timeout(120)  # management stats lag ~5 s
async def test_bus_queue_stats_matches(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """`await bus.queue_stats(name)` returns the same numbers as the CLI."""
    await bus.declare(_worker(queue_name))
    try:
        await _fill(bus, broker_admin, queue_name)
        stats = await bus.queue_stats(queue_name)
        for _ in range(40):
            if (stats.ready, stats.dlq, stats.retry) == (7, 2, 1):
                break
            await asyncio.sleep(0.5)
            stats = await bus.queue_stats(queue_name)
        assert (stats.name, stats.ready, stats.dlq, stats.retry) == (queue_name, 7, 2, 1)
    finally:
        await _cleanup(broker_admin, queue_name)


def test_unknown_queue_is_one_error_line(amqp_url: str) -> None:
    """Naming a queue that does not exist: one `error:` line, exit 2, both data sources."""
    for env in ({}, {"FRAMEWORK_MANAGEMENT_URL": DEAD_MANAGEMENT}):
        result = framework(amqp_url, "queues", "no.such.queue.x1", env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "error: unknown queue 'no.such.queue.x1': it does not exist on the broker"
        ]


async def _cleanup(admin: BrokerAdmin, queue: str) -> None:
    await admin.delete_queues(queue, names.dlq_name(queue), *default_retry_queues(queue))
