"""Scenario 9: the service's PostgreSQL restarts under an outbox worker and its relay.

The database is a throwaway cluster this scenario owns (initdb + pg_ctl on its own port),
never the host's. A `framework run` worker whose handler inserts a row and publishes an
event in one transaction keeps consuming while the cluster is restarted three times (a clean
`fast` stop and two `immediate` crash-stops, each down for a while). Deliveries that meet the
database down are deferred without burning an attempt; the relay resumes publishing after.
Invariant: every sent command has exactly one business row, every event takes effect
downstream exactly once, nothing is dead-lettered, nothing is left unsent in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from framework import Context, Worker
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.chaos.harness import Run, scale
from tests.chaos.postgres_cluster import PostgresCluster, postgres_cluster
from tests.integration.outbox_service import POSTGRES_TABLE, AddItem, ItemAdded, ItemWorker

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

REPO = Path(__file__).resolve().parents[2]
RESTARTS = (("fast", 1.0), ("immediate", 2.0), ("immediate", 3.0))  # (stop mode, seconds down)


def consumer_class(
    queue: str, effects: Counter[str], all_seen: asyncio.Event, expected: int
) -> type[Worker]:
    class ItemAddedConsumer(Worker):
        async def handle(self, msg: ItemAdded, ctx: Context) -> None:
            effects[msg.item_id] += 1
            if len(effects) >= expected:
                all_seen.set()

    ItemAddedConsumer.queue = queue
    return ItemAddedConsumer


async def restart_now_and_then(cluster: PostgresCluster, moments: list[float]) -> None:
    for mode, down in RESTARTS:
        await asyncio.sleep(3.0)
        await cluster.stop(mode)
        await asyncio.sleep(down)
        await cluster.start()
        moments.append(time.time())


async def rows(url: str) -> tuple[list[tuple[str, float]], int]:
    conn = await asyncpg.connect(url)
    try:
        items = [(r[0], r[1]) for r in await conn.fetch("SELECT item_id, written_at FROM items")]
        unsent = await conn.fetchval("SELECT COUNT(*) FROM fw_outbox WHERE sent_at IS NULL")
    finally:
        await conn.close()
    return items, int(unsent)


async def test_postgres_restarts_lose_and_duplicate_nothing(
    chaos_run: Callable[[str], Run],
    broker_admin: BrokerAdmin,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    """Three restarts of the service's own PostgreSQL: lost = 0, duplicated = 0."""
    run = chaos_run("9-outbox-postgres-restart")
    total = scale(600, 3000)
    worker_cls = type("ItemWorkerHere", (ItemWorker,), {"queue": run.queue})
    effects: Counter[str] = Counter()
    all_seen = asyncio.Event()
    consumer_cls = consumer_class(f"{run.queue}.downstream", effects, all_seen, total)
    log = tmp_path / "worker.log"
    async with postgres_cluster() as cluster, run.bus() as bus:
        conn = await asyncpg.connect(cluster.url)
        await conn.execute(POSTGRES_TABLE)
        await conn.close()
        consumer = consumer_cls(bus)
        consuming = asyncio.create_task(consumer.run())
        await consumer.wait_ready()
        await bus.declare(worker_cls)
        env = {
            **os.environ,
            "AMQP_URL": amqp_url,
            "OUTBOX_QUEUE": run.queue,
            "OUTBOX_DATABASE": cluster.url,
            "FRAMEWORK_OUTBOX_LEASE": "3",
            "FRAMEWORK_OUTBOX_POLL_INTERVAL": "0.2",
            "FRAMEWORK_LOG_FORMAT": "json",
            "FRAMEWORK_LOG_LEVEL": "warning",
            "FRAMEWORK_SERVICE_NAME": f"{run.prefix}-w",
        }
        with log.open("ab") as out:
            worker = await asyncio.create_subprocess_exec(
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
        moments: list[float] = []
        try:
            faults = asyncio.create_task(restart_now_and_then(cluster, moments))
            sent = 0
            for n in range(total):
                await bus.send(AddItem(item_id=f"i{n}"), idempotency_key=f"{run.prefix}-{n}")
                sent += 1
                await asyncio.sleep(13.0 / total)  # spread over the restarts
            await faults
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), timeout=120)
            deadline = time.monotonic() + 60
            # another process's relay and database push no events: polling is the only way
            while (await rows(cluster.url))[1] and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.wait(), timeout=30)
            await consumer.stop()
            await consuming
        items, unsent = await rows(cluster.url)
        left = await broker_admin.depth(run.queue)
        dead = await broker_admin.drain(names.dlq_name(run.queue))
        await broker_admin.delete_worker_queues(run.queue, build_spec(worker_cls).policy.tiers_ms())
        await broker_admin.delete_worker_queues(
            consumer_cls.queue, build_spec(consumer_cls).policy.tiers_ms()
        )

    per_item = Counter(item for item, _ in items)
    expected = {f"i{n}" for n in range(total)}
    lost = len(expected - set(per_item)) + len(expected - set(effects))
    duplicated = sum(1 for c in per_item.values() if c > 1) + sum(
        1 for c in effects.values() if c > 1
    )
    deferred = sum(
        1
        for line in log.read_text().splitlines()
        if "retry_scheduled" in line and "unavailable" in line
    )
    handled_once = sum(1 for item in expected if per_item[item] == 1 and effects[item] == 1)
    recoveries = [
        min((at for _, at in items if at > moment), default=moment) - moment for moment in moments
    ]
    run.figures.update(
        {
            "attempted": total,
            "confirmed": sent,
            "rejected": 0,
            "failed": 0,
            "handled_once": handled_once,
            "raw_handlings": handled_once + consumer.stats.duplicates,
            "duplicates_absorbed": consumer.stats.duplicates,
            "dead_lettered": len(dead),
            "lost": lost,
            "phantom": len(set(per_item) - expected),
            "left_in_queues": left,
            "faults": f"{len(moments)} x PostgreSQL restart (1 fast, 2 immediate)",
            "recovery_max_s": round(max(recoveries, default=0.0), 2),
            "time_s": round(run.elapsed(), 1),
            "worker_exit_codes": [code],
            "business_rows": len(items),
            "duplicated_rows_or_effects": duplicated,
            "outbox_unsent": unsent,
            "deferred_while_db_down": deferred,
        }
    )
    assert code == 0, log.read_text()[-3000:]
    assert len(moments) == len(RESTARTS)
    assert lost == 0 and duplicated == 0, run.figures
    assert not dead, [m.headers.get(names.ERROR) for m in dead[:3]]
    assert unsent == 0 and left == 0, "rows left unsent in the outbox, or messages queued"
    assert deferred > 0, "no delivery met the database down: the restarts missed the work"
