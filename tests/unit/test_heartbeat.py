"""Long-running handlers: `ctx.heartbeat()`, progress bookkeeping, lease renewal when due."""

from __future__ import annotations

import asyncio

import pytest

from framework import Command, Context, LeaseLost, Worker
from framework.consume.heartbeat import HandlerProgress, check_progress
from framework.idempotency import ClaimResult, MemoryStore
from framework.idempotency.leases import HeldLease, LeaseKeeper, current_lease, new_token
from framework.ops.metrics import Metrics
from framework.testing import MemoryBus


class Step(Command):
    type_name = "tests.heartbeat.Step"
    n: int


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_tracks_age_and_silence_of_running_handlers() -> None:
    """The oldest running handler's age and the longest silence, 0 once none runs."""
    clock = FakeClock()
    progress = HandlerProgress(clock=clock)
    first = progress.start()
    clock.now += 10
    second = progress.start()
    clock.now += 5
    assert progress.beat(first, 0.5) == 15
    clock.now += 2
    assert progress.oldest_age() == 17
    assert progress.longest_silence() == 7  # `second` never reported: since its start
    assert (first.count, first.progress, progress.heartbeats) == (1, 0.5, 1)
    progress.finish(second)
    assert progress.longest_silence() == 2
    progress.finish(first)
    assert (progress.oldest_age(), progress.longest_silence(), len(progress)) == (0, 0, 0)


@pytest.mark.parametrize(("given", "kept"), [(None, None), ("rows 10-20", "rows 10-20"), (3, 3.0)])
def test_progress_values_accepted(given: object, kept: object) -> None:
    """A text, a number (kept as float) or None."""
    assert check_progress(given) == kept


@pytest.mark.parametrize("given", [True, object(), [0.5]])
def test_other_progress_values_are_refused(given: object) -> None:
    """Anything else is a TypeError that names what is accepted."""
    with pytest.raises(TypeError, match="takes a str, a number or None"):
        check_progress(given)


async def test_renew_if_due_renews_only_a_late_lease() -> None:
    """A lease renewed within the interval is left alone; one older is renewed at once."""
    store = MemoryStore()
    keeper = LeaseKeeper(store, interval=60.0)
    token = new_token()
    await store.claim("q", "k", 1.0, token)
    held = HeldLease("q", "k", token, 1.0)
    assert await keeper.renew_if_due(store, held)
    await asyncio.sleep(1.1)  # past the lease: not renewed, since not due by the interval
    assert await store.claim("q", "k", 1.0, new_token()) is ClaimResult.CLAIMED

    token = new_token()
    await store.claim("q", "k2", 1.0, token)
    late = HeldLease("q", "k2", token, 1.0)
    late.renewed_at -= 60.0
    assert await keeper.renew_if_due(store, late)
    assert late.renewed_at > held.renewed_at
    await asyncio.sleep(0.6)  # 1.1 s after the claim: alive only through the renewal
    assert await store.claim("q", "k2", 1.0, new_token()) is ClaimResult.BUSY


async def test_heartbeat_of_a_lost_lease_raises_lease_lost() -> None:
    """Once another worker holds the key, the handler's heartbeat raises `LeaseLost`."""
    store = MemoryStore()
    keeper = LeaseKeeper(store, interval=0.01)
    held = HeldLease("q", "k", new_token(), 1.0)
    await store.claim("q", "k", 60.0, "another-worker")
    keeper.hold(held)
    progress = HandlerProgress()
    beat = progress.start()
    async with MemoryBus(idempotency=store) as bus:  # a bus hands out its store once started
        report = progress.reporter(beat, keeper, bus)
        reset = current_lease.set(held)
        try:
            await asyncio.sleep(0.02)
            with pytest.raises(LeaseLost, match="another worker holds the key 'k'"):
                await report("half way")
        finally:
            current_lease.reset(reset)
    assert held.lost and progress.heartbeats == 1


async def test_a_handler_longer_than_its_lease_keeps_its_key(test_bus: MemoryBus) -> None:
    """A handler running three lease lengths (lease 1 s, timeout 10 s) reporting progress:
    the key stays claimed throughout, the heartbeats are counted and exported, and the
    message is handled once."""
    metrics = Metrics()
    steps: list[ClaimResult] = []

    class LongWorker(Worker):
        queue = "mem.long"
        timeout = 10.0
        idempotency_lease = 1.0

        async def handle(self, msg: Step, ctx: Context) -> None:
            for n in range(6):
                await asyncio.sleep(0.5)
                await ctx.heartbeat(n / 6)
                steps.append(await test_bus.idempotency.claim(ctx.queue, ctx.message_id, 1, "x"))

    worker = await test_bus.start_worker(LongWorker)
    metrics.watch(worker)
    await test_bus.send(Step(n=1))
    await asyncio.wait_for(test_bus.drain(), 10)
    assert steps == [ClaimResult.BUSY] * 6
    assert worker.stats.handled == 1
    metrics.render()
    assert (
        metrics.registry.get_sample_value(
            "framework_handler_heartbeats_total", {"queue": "mem.long"}
        )
        == 6
    )
    assert (
        metrics.registry.get_sample_value(
            "framework_handler_oldest_running_seconds", {"queue": "mem.long"}
        )
        == 0
    )


def test_heartbeat_outside_a_worker_is_a_no_op() -> None:
    """A Context built by hand (a unit test of a handler) accepts heartbeats and does nothing."""
    ctx = Context(bus=MemoryBus(), queue="q", message_id="m", correlation_id="c", attempt=1)
    asyncio.run(ctx.heartbeat("ok"))
