"""A worker pauses consuming while a breaker is open and resumes when it half-opens."""

from __future__ import annotations

import asyncio

from framework import Bus, Command, Context, Worker
from framework.resilience.breaker import BreakerState, CircuitBreaker
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names


class Charge(Command):
    type_name = "tests.breakers.Charge"
    n: int


async def test_open_breaker_pauses_consumer_and_messages_stay_queued(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Failures open the breaker; new messages wait in the queue without burning attempts;
    after reset_timeout a probe succeeds, the breaker closes and everything is handled."""
    gateway_up = asyncio.Event()
    handled: list[int] = []
    attempts_seen: dict[int, int] = {}
    all_done = asyncio.Event()
    breaker = CircuitBreaker("gateway", failure_threshold=2, reset_timeout=1.5)

    class Payments(Worker):
        queue = queue_name
        prefetch = 4
        retry_base_delay = 0.2
        retry_max_delay = 1.0
        max_attempts = 3
        breakers = (breaker,)

        async def handle(self, msg: Charge, ctx: Context) -> None:
            attempts_seen[msg.n] = ctx.attempt
            async with breaker:
                if not gateway_up.is_set():
                    raise ConnectionError("gateway down")
            handled.append(msg.n)
            if len(handled) == 12:
                all_done.set()

    worker = await worker_factory(Payments)
    for n in range(2):
        await bus.send(Charge(n=n))
    for _ in range(100):
        if breaker.state is BreakerState.OPEN:
            break
        await asyncio.sleep(0.05)
    assert breaker.state is BreakerState.OPEN
    # paused: the subscription is cancelled, so nothing sent now can be delivered
    await broker_admin.wait_for_consumers(queue_name, 0, timeout=1.0)
    for n in range(2, 12):
        await bus.send(Charge(n=n))
    # the new messages are buffered in the queue, not delivered
    assert await broker_admin.depth(queue_name) >= 10
    assert await broker_admin.consumer_count(queue_name) == 0
    assert not any(n >= 2 for n in attempts_seen)
    gateway_up.set()
    await asyncio.wait_for(all_done.wait(), 20)
    assert state_now(breaker) is BreakerState.CLOSED
    assert sorted(handled) == list(range(12))
    assert all(attempts_seen[n] == 1 for n in range(2, 12))
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0
    assert worker.stats.dead_lettered == 0


def state_now(breaker: CircuitBreaker) -> BreakerState:
    """The state as it is now (mypy would keep an earlier narrowing of `breaker.state`)."""
    return breaker.state
