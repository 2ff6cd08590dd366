"""Scenario 5: a poison flood. 10% of the messages are malformed (not JSON), schema-invalid,
permanently failing, or kill the worker process; healthy work keeps flowing and every
poison message ends in the DLQ with the right reason."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from framework.testing import BrokerAdmin
from framework.wire import names
from tests.chaos import ledger
from tests.chaos.harness import Run, Sender, check, finish, scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

# poison kind -> the reason its DLQ copy must carry (fw-reason, or x-death for crashes)
EXPECTED_REASON = {
    "malformed": "invalid",
    "schema": "invalid",
    "permanent": "permanent",
    "crash": "delivery_limit",
}


@pytest.mark.timeout(scale(240, 1200))
async def test_poison_flood_ends_in_dlq_with_reasons(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    run = chaos_run("5-poison-flood")
    # prefetch 1: a crash takes down only the poison itself, never a healthy neighbour
    run.configure(CHAOS_PREFETCH="1", CHAOS_DELIVERY_LIMIT="2")
    healthy = scale(450, 4500)
    crash = scale(4, 20)
    per_kind = (healthy // 9 - crash) // 3
    poison = {
        "crash": crash,
        "malformed": per_kind,
        "schema": per_kind,
        "permanent": healthy // 9 - crash - 2 * per_kind,
    }
    plan = ["ok"] * healthy + [kind for kind, count in poison.items() for _ in range(count)]
    rng = random.Random()
    rng.shuffle(plan)
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=2)
        await pool.start()
        started = time.time()
        try:
            sender = Sender(run, bus, concurrency=8)

            async def send(n: int, kind: str) -> None:
                if kind in ("ok", "permanent", "crash"):
                    mode = {"ok": "ok"}.get(kind, kind)
                    await sender.send(n, kind, mode=mode, work_ms=rng.randint(1, 10))
                    return
                key = sender.key(n)
                run.ledger.attempt(key, kind)
                body = (
                    b"\xff{not json"
                    if kind == "malformed"
                    else json.dumps({"n": "not a number", "mode": 7}).encode()
                )
                await broker_admin.publish_raw(
                    run.type_name,
                    body,
                    exchange=names.COMMANDS_EXCHANGE,
                    message_id=key,
                    type=run.type_name,
                    content_type="application/json",
                )
                run.ledger.settle(key, ledger.CONFIRMED, 1)

            gate = asyncio.Semaphore(8)

            async def gated(n: int, kind: str) -> None:
                async with gate:
                    await send(n, kind)

            await asyncio.gather(*(gated(n, kind) for n, kind in enumerate(plan)))
            accounting = await finish(run, broker_admin, pool, settle_timeout=scale(120, 600))
        finally:
            await pool.stop()
    handled_s = time.time() - started
    kinds = run.ledger.sends()
    wrong = [
        (d.key, kinds.get(d.key), d.reason)
        for d in run.figures["dead"]
        if EXPECTED_REASON.get(kinds.get(d.key, "")) != d.reason
    ]
    dead_by_kind = Counter(kinds.get(d.key) for d in run.figures["dead"])
    crashes = [code for code in pool.exits() if code == 3]
    run.figures.update(
        faults=f"{sum(poison.values())} poison ("
        + ", ".join(f"{k} {v}" for k, v in poison.items())
        + ")",
        worker_crashes=len(crashes),
        healthy_per_s=round(healthy / handled_s, 1),
        dead_by_kind=dict(dead_by_kind),
    )
    check(run, accounting)
    assert not wrong, f"DLQ messages with the wrong reason (key, kind, reason): {wrong[:10]}"
    assert dict(dead_by_kind) == {k: v for k, v in poison.items() if v}, dead_by_kind
    assert accounting.handled_once == healthy  # every healthy message, none of the poison
    assert crashes and len(crashes) <= crash * 3 + 2, pool.exits()
