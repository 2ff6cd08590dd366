"""Connections force-closed three times while 2000 commands flow: nothing lost, none twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sized

import pytest

from framework import Bus, Command, Context, PublishFailed, Worker
from framework.testing import BrokerAdmin, eventually
from framework.wire import names
from tests.integration.test_reconnect import _close_connections_named

TOTAL = 2000


class Deposit(Command):
    type_name = "tests.connloss.Deposit"
    n: int


@pytest.mark.timeout(90)  # ~14 s alone; more under load
async def test_forced_disconnects_lose_nothing_and_duplicate_nothing(
    amqp_url: str, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Every confirmed send is handled exactly once in effect; nothing stays unacked."""
    service = f"connloss-{uuid.uuid4().hex[:8]}"
    effects: Counter[str] = Counter()
    confirmed: set[str] = set()
    unconfirmed: set[str] = set()

    class Ledger(Worker):
        queue = queue_name
        prefetch = 64
        retry_base_delay = 0.2
        retry_max_delay = 1.0

        async def handle(self, msg: Deposit, ctx: Context) -> None:
            await asyncio.sleep(0.001)
            effects[ctx.message_id] += 1

    async def producer(bus: Bus) -> None:
        for n in range(TOTAL):
            key = f"{service}-{n}"
            try:
                await bus.send(Deposit(n=n), idempotency_key=key)
            except PublishFailed:
                unconfirmed.add(key)
            else:
                confirmed.add(key)
            if n % 50 == 0:
                async with progress:
                    progress.notify_all()

    progress = asyncio.Condition()

    async def producer_with_progress(bus: Bus) -> None:
        await producer(bus)
        async with progress:
            progress.notify_all()

    async def chaos() -> None:
        for round_ in range(1, 4):
            target = TOTAL // 4 * round_
            async with progress:
                await progress.wait_for(has_at_least(confirmed, target))
            assert await _close_connections_named(service, 2) >= 2

    async with Bus.connect(amqp_url, service=service) as bus:
        worker = Ledger(bus)
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            await asyncio.wait_for(asyncio.gather(producer_with_progress(bus), chaos()), 120)
            await eventually(lambda: confirmed <= set(effects), timeout=60)
        finally:
            await worker.stop()
            await run
    try:
        _check_accounting(effects, confirmed, unconfirmed)
        assert await broker_admin.depth(queue_name) == 0  # nothing left unacked or unhandled
        assert await broker_admin.depth(names.dlq_name(queue_name)) == 0
    finally:
        await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())


def _check_accounting(effects: Counter[str], confirmed: set[str], unconfirmed: set[str]) -> None:
    """Every confirmed send handled once; nothing twice; nothing that was not sent."""
    assert len(confirmed) + len(unconfirmed) == TOTAL
    assert len(confirmed) >= TOTAL * 0.95
    missing = confirmed - set(effects)
    assert not missing, f"{len(missing)} confirmed sends never handled"
    twice = {k: c for k, c in effects.items() if c > 1}
    assert not twice, f"handled more than once: {twice}"
    assert set(effects) <= confirmed | unconfirmed  # nothing handled that was not sent


def has_at_least(items: Sized, count: int) -> Callable[[], bool]:
    """A predicate: `items` holds `count` or more (for Condition.wait_for)."""
    return lambda: len(items) >= count
