"""Scenario 8: the idempotency store stops answering, then refuses connections, while two
worker processes consume a steady stream. Only a proxy this test owns (in front of the
host's Redis or PostgreSQL) is faulted: the store itself is never touched."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from framework.testing import BrokerAdmin
from tests.chaos.harness import Run, Sender, check, finish, recovery, recovery_times, scale
from tests.chaos.proxy import FaultProxy

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))

STORES = {
    "redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgres": os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
}
STORE_TIMEOUT = 1.0  # FRAMEWORK_IDEMPOTENCY_TIMEOUT of the workers


@pytest.mark.timeout(scale(240, 900))
@pytest.mark.parametrize("store", sorted(STORES))
async def test_store_stall_and_outage(
    store: str, chaos_run: Callable[..., Run], broker_admin: BrokerAdmin
) -> None:
    """The workers reach the store only through the proxy. It hangs (every link stalls,
    new ones too) and later refuses connections; the workers defer within the store-call
    bound, back off, and once it answers again handle everything: nothing lost, no key's
    effect twice."""
    run = chaos_run(f"8-store-stall-{store}")
    rounds = scale(1, 3)
    total = scale(600, 2400)
    rng = random.Random()
    target = urlsplit(STORES[store])
    faults: list[tuple[str, float]] = []
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        env = {
            "FRAMEWORK_IDEMPOTENCY_URL": proxy.url(STORES[store]),
            "FRAMEWORK_IDEMPOTENCY_TIMEOUT": str(STORE_TIMEOUT),
        }
        async with run.bus(publish_timeout=5.0) as bus:
            await bus.declare(run.worker_cls)
            pool = run.pool(size=2, slot_env=(), **env)
            await pool.start()
            try:
                sender = Sender(run, bus, concurrency=16, max_tries=40, retry_pause=0.3)
                sending = asyncio.create_task(
                    sender.send_many(
                        range(total),
                        rate=total / (rounds * 20.0 + 3.0),
                        vary=lambda _: {"work_ms": rng.randint(5, 30)},
                    )
                )
                for _ in range(rounds):
                    await asyncio.sleep(3.0)
                    faults.append(("hang", time.time()))
                    proxy.hang()
                    await asyncio.sleep(6.0)
                    proxy.unhang()
                    await asyncio.sleep(4.0)
                    faults.append(("refuse", time.time()))
                    proxy.refuse()
                    await asyncio.sleep(4.0)
                    proxy.accept()
                    await asyncio.sleep(3.0)
                await sending
                accounting = await finish(run, broker_admin, pool, settle_timeout=scale(120, 300))
            finally:
                await pool.stop()
    run.figures.update(
        faults=f"{rounds} x (store hangs 6 s, refuses 4 s) behind a proxy",
        store=store,
        store_links=proxy.accepted,
        send_errors=dict(sender.errors),
        duplicate_effects=accounting.raw_handlings - accounting.handled_once,
        **recovery(recovery_times(run, [at for _, at in faults])),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    # no kills here: every handling is the first and only one of its key
    assert accounting.raw_handlings == accounting.handled_once
    assert pool.exits() == [], "a worker process died while its store stalled"
