"""Scenario: bad input from outside mixed into healthy work. Poisoned header tables (1500
levels), keyless messages, forged fw-attempt / fw-deadline, oversized and deeply nested
bodies: each bad one ends in the DLQ as `invalid` (or, for a forged attempt, is simply
handled), every healthy one is handled exactly once. Only this run's own queue; the broker
is never stopped."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from framework.testing import BrokerAdmin
from framework.wire import names
from framework.wire.keys import content_key
from tests.chaos import ledger
from tests.chaos.harness import Run, Sender, check, finish, scale
from tests.integration.raw_publish import publish_keyless, publish_poisoned

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

# bad kind -> what becomes of it
EXPECTED_REASON = {
    "poisoned-header": "invalid",
    "keyless": "invalid",
    "forged-deadline": "invalid",
    "oversized": "invalid",
    "nested-body": "invalid",
}


@pytest.mark.timeout(scale(240, 1200))
async def test_bad_input_is_dead_lettered_alone(
    chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    run = chaos_run("bad-input")
    run.configure(CHAOS_PREFETCH="16")
    healthy = scale(300, 3000)
    bad = {
        "poisoned-header": scale(3, 20),
        "keyless": scale(5, 50),
        "forged-attempt": scale(5, 50),
        "forged-deadline": scale(5, 50),
        "oversized": scale(2, 10),
        "nested-body": scale(3, 20),
    }
    plan = ["ok"] * healthy + [kind for kind, count in bad.items() for _ in range(count)]
    random.Random().shuffle(plan)
    async with run.bus(publish_timeout=5.0) as bus:
        await bus.declare(run.worker_cls)
        pool = run.pool(size=2)
        await pool.start()
        try:
            sender = Sender(run, bus, concurrency=8)

            async def raw(key: str, kind: str, body: bytes, **properties: Any) -> None:
                run.ledger.attempt(key, kind)
                await broker_admin.publish_raw(
                    run.queue, body, message_id=key, type=run.type_name, **properties
                )
                run.ledger.settle(key, ledger.CONFIRMED, 1)

            async def send(n: int, kind: str) -> None:
                key = sender.key(n)
                body = json.dumps({"n": n}).encode()
                if kind == "ok":
                    await sender.send(n, kind, work_ms=random.randint(1, 5))
                elif kind == "oversized":
                    await sender.send(n, kind, pad="x" * (1024 * 1024 + 1))
                elif kind == "forged-attempt":
                    await raw(key, kind, body, headers={names.ATTEMPT: 2**62})
                elif kind == "forged-deadline":
                    await raw(key, kind, body, headers={names.DEADLINE: "18446744073709551616"})
                elif kind == "nested-body":
                    await raw(key, kind, b'{"n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
                elif kind == "keyless":  # the DLQ knows it by its content key
                    run.ledger.attempt(content_key(run.type_name, body), kind)
                    await publish_keyless(run.amqp_url, run.queue, body, type_name=run.type_name)
                    run.ledger.settle(content_key(run.type_name, body), ledger.CONFIRMED, 1)
                else:  # poisoned-header
                    run.ledger.attempt(key, kind)
                    await publish_poisoned(
                        run.amqp_url, run.queue, body, message_id=key, type_name=run.type_name
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
    kinds = run.ledger.sends()
    wrong = [
        (d.key, kinds.get(d.key), d.reason)
        for d in run.figures["dead"]
        if EXPECTED_REASON.get(kinds.get(d.key, "")) != d.reason
    ]
    dead_by_kind = Counter(kinds.get(d.key) for d in run.figures["dead"])
    run.figures.update(
        worker_crashes=len(pool.exits()),
        faults=", ".join(f"{kind} {count}" for kind, count in bad.items()),
        dead_by_kind=dict(dead_by_kind),
    )
    check(run, accounting)
    assert not wrong, f"DLQ messages with the wrong reason (key, kind, reason): {wrong[:10]}"
    assert dict(dead_by_kind) == {k: v for k, v in bad.items() if k in EXPECTED_REASON}
    assert accounting.handled_once == healthy + bad["forged-attempt"]
    assert accounting.raw_handlings == accounting.handled_once  # no duplicate effect
    assert pool.exits() == [], pool.logs_tail()  # no worker died on the way
