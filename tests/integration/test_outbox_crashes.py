"""A worker whose handler writes a row and publishes an event in one transaction, SIGKILLed
at random points (before commit, between commit and publish, between publish and mark,
after ack) across hundreds of messages and restarted each time: every business row exists
exactly once, every event reaches the downstream queue at least once and takes effect
there exactly once, and nothing is left unsent in the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from framework import Bus, Context, Worker
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from tests.integration.outbox_harness import (
    postgres_database,
    read_outcome,
    sqlite_database,
    wait_consuming,
    wait_relayed,
)
from tests.integration.outbox_service import AddItem, ItemAdded, ItemWorker

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 300
KILLS = 12


class Downstream:
    """What the consumer of ItemAdded did: effects (once per distinct key) and its keys."""

    def __init__(self) -> None:
        self.effects: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}
        self.all_seen = asyncio.Event()


def downstream_worker(queue: str, seen: Downstream) -> type[Worker]:
    class ItemAddedConsumer(Worker):
        async def handle(self, msg: ItemAdded, ctx: Context) -> None:
            seen.effects[msg.item_id] += 1  # after the key check: once per distinct key
            seen.keys.setdefault(msg.item_id, set()).add(ctx.message_id)
            if len(seen.effects) >= MESSAGES:
                seen.all_seen.set()

    ItemAddedConsumer.queue = queue
    return ItemAddedConsumer


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_database(tmp_path)
        return
    async with postgres_database() as url:
        yield url


async def start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework",
            "run",
            "tests.integration.outbox_service:ItemWorker",
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )


@pytest.mark.timeout(90)  # ~13 s alone; more under load
async def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    amqp_url: str,
    broker_admin: BrokerAdmin,
    bus: Bus,
    worker_factory: object,
    queue_name: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    """12 SIGKILLs at random moments over 300 messages: rows once, events once in effect."""
    worker_cls = type(
        "ItemWorkerHere", (ItemWorker,), {"queue": queue_name, "database": database_url}
    )
    seen = Downstream()
    consumer_cls = downstream_worker(f"{queue_name}.downstream", seen)
    consumer = await worker_factory(consumer_cls)  # type: ignore[operator]
    await bus.declare(worker_cls)
    await bus.send_many(
        [AddItem(item_id=f"i{n}") for n in range(MESSAGES)],
        idempotency_keys=[f"add-{queue_name}-{n}" for n in range(MESSAGES)],
    )
    delay = "0.01" if database_url.startswith("sqlite") else "0.2"
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "OUTBOX_QUEUE": queue_name,
        "OUTBOX_DATABASE": database_url,
        "OUTBOX_HANDLER_DELAY": delay,
        "FRAMEWORK_OUTBOX_LEASE": "2",
        "FRAMEWORK_OUTBOX_POLL_INTERVAL": "0.2",
        "FRAMEWORK_LOG_FORMAT": "json",
        "FRAMEWORK_LOG_LEVEL": "warning",
    }
    log = tmp_path / "worker.log"
    rng = random.Random()
    kills_mid_work = 0
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for _ in range(KILLS):
            process = await start(env, log)
            if await wait_consuming(channel, queue_name):
                await asyncio.sleep(rng.uniform(0.05, 0.6))  # a kill while work flows
            if not seen.all_seen.is_set():
                kills_mid_work += 1
            process.send_signal(signal.SIGKILL)
            await process.wait()
        process = await start(env, log)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.all_seen.wait(), timeout=90)
            assert seen.all_seen.is_set(), (
                f"downstream saw {len(seen.effects)} of {MESSAGES}; "
                f"worker log: {log.read_text()[-2000:]}"
            )
            assert await wait_relayed(amqp_url, database_url, queue_name) == 0
            await broker_admin.wait_for_depth(queue_name, 0, timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=30)
        assert code == 0, log.read_text()[-3000:]
        items, unsent, swept = await read_outcome(database_url)
    finally:
        await connection.close()
        spec = build_spec(worker_cls)
        await broker_admin.delete_worker_queues(queue_name, spec.policy.tiers_ms())

    expected = {f"i{n}" for n in range(MESSAGES)}
    print(
        f"outbox-crashes: kills mid-work={kills_mid_work} rows re-claimed by a sweep={swept} "
        f"duplicates absorbed downstream={consumer.stats.duplicates}"
    )
    assert kills_mid_work >= 3, "the kills all landed after the work was done"
    assert Counter(items) == Counter(expected), "a business row is missing or duplicated"
    assert set(seen.effects) == expected and set(seen.effects.values()) == {1}
    assert all(len(keys) == 1 for keys in seen.keys.values()), "an event got a second key"
    assert unsent == 0, "rows left unsent in the outbox"
    assert swept > 0, "no row was ever re-published by the sweep: crashes did not hit it"
