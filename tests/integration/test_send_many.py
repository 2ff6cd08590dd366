"""`send_many` says what happened to every message, on both buses: a caller re-sends exactly
the unconfirmed ones under the same keys, and nothing is handled twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from framework import Bus, Command, Context, Overloaded, SendManyFailed, Unroutable, Worker
from framework.testing import BrokerAdmin, MemoryBus
from tests.integration.contract_harness import Harness, MemoryHarness, RabbitHarness


class Fill(Command):
    type_name = "tests.send_many.Fill"
    n: int


class Orphan(Command):
    type_name = "tests.send_many.Orphan"  # no queue is ever bound for it


@pytest.fixture(params=["memory", "rabbitmq"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The same verbs on the in-memory bus and on the real broker."""
    if request.param == "memory":
        async with MemoryBus(service="tests") as memory:
            yield MemoryHarness(memory)
        return
    url = request.getfixturevalue("amqp_url")
    async with Bus.connect(url, service="tests") as bus, BrokerAdmin.connect(url) as admin:
        rabbit = RabbitHarness(bus, admin)
        try:
            yield rabbit
        finally:
            await rabbit.close()


async def test_results_name_each_failed_key_and_resending_them_duplicates_nothing(
    harness: Harness, queue_name: str
) -> None:
    """Unroutable and Overloaded members are reported by key; re-sending exactly those
    (same keys) gets every Fill handled once."""
    handled: Counter[str] = Counter()

    class Bounded(Worker):
        queue = queue_name
        max_queue_length = 3

        async def handle(self, msg: Fill, ctx: Context) -> None:
            handled[ctx.message_id] += 1

    await harness.bus.declare(Bounded)  # not consuming yet: the queue fills up
    fills = [Fill(n=n) for n in range(6)]
    commands: list[Command] = [*fills[:3], Orphan(), *fills[3:], Orphan()]
    keys = [f"{queue_name}-{i}" for i in range(len(commands))]
    with pytest.raises(SendManyFailed) as caught:
        await harness.bus.send_many(
            commands, idempotency_keys=keys, window=1, stop_on_failure=False
        )
    results = caught.value.results
    assert [r.key for r in results] == keys
    assert [r.fate for r in results if isinstance(commands[r.index], Orphan)] == [
        "Unroutable",
        "Unroutable",
    ]
    fill_fates = [r.fate for r in results if isinstance(commands[r.index], Fill)]
    confirmed = fill_fates.count("confirmed")
    assert confirmed in (3, 4)  # 3.10 quorum queues may admit one past x-max-length
    assert fill_fates == ["confirmed"] * confirmed + ["Overloaded"] * (6 - confirmed)

    worker = await harness.start(Bounded)
    await harness.settle(worker)
    again = [r for r in caught.value.unconfirmed if isinstance(commands[r.index], Fill)]
    resent = await harness.bus.send_many(
        [commands[r.index] for r in again], idempotency_keys=[r.key for r in again]
    )
    assert resent == [r.key for r in again]
    await harness.settle(worker)
    fill_keys = [k for k, c in zip(keys, commands, strict=True) if isinstance(c, Fill)]
    assert handled == Counter(dict.fromkeys(fill_keys, 1))


async def test_stops_at_first_failure_and_marks_the_rest_not_sent(harness: Harness) -> None:
    """By default no send starts after a failure; the error is still an Unroutable and
    says which keys were never sent."""
    keys = [f"orphan-{n}" for n in range(5)]
    with pytest.raises(Unroutable) as caught:
        await harness.bus.send_many([Orphan() for _ in keys], idempotency_keys=keys, window=1)
    assert isinstance(caught.value, SendManyFailed)
    assert [(r.key, r.fate) for r in caught.value.results] == [
        ("orphan-0", "Unroutable"),
        *((k, "not-sent") for k in keys[1:]),
    ]
    assert [r.key for r in caught.value.unconfirmed] == keys
    assert not isinstance(caught.value, Overloaded)
