"""Helpers for the `framework dlq` tests: the CLI from async code, a queue nobody consumes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from framework import Bus, Context, Worker
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.cli_runner import framework, framework_json
from tests.integration.ops_service import Job


async def cli(amqp_url: str, *args: str, stdin: str = "") -> Any:
    return await asyncio.to_thread(framework, amqp_url, *args, stdin=stdin)


async def cli_json(amqp_url: str, *args: str) -> Any:
    return await asyncio.to_thread(framework_json, amqp_url, *args)


async def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - state changes in the worker's tasks
            await asyncio.sleep(0.05)


class Idle(Worker):
    """Declares a queue and its DLQ; never consumes (the tests fill the DLQ directly)."""

    queue = "set-per-test"

    async def handle(self, msg: Job, ctx: Context) -> None:  # pragma: no cover
        pass


@contextlib.asynccontextmanager
async def idle_queue(bus: Bus, broker_admin: BrokerAdmin, queue_name: str) -> AsyncIterator[str]:
    """`queue_name` and its DLQ declared; yields the DLQ's name; deletes both afterwards."""
    worker = type("IdleHere", (Idle,), {"queue": queue_name})
    await bus.declare(worker)
    try:
        yield names.dlq_name(queue_name)
    finally:
        await broker_admin.delete_worker_queues(queue_name, build_spec(worker).policy.tiers_ms())
