"""The behaviour a handler can observe, run on both buses so they cannot drift apart.

Every test is parametrised over the in-memory bus (`memory`) and RabbitMQ (`rabbitmq`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from framework import Bus, Command, Context, Event, PermanentError, Unroutable, Worker
from framework.errors import RemoteError, RequestTimeout
from framework.testing import BrokerAdmin, MemoryBus
from framework.wire import names
from framework.wire.acks import AckCoalescer
from tests.integration.contract_harness import Harness, MemoryHarness, PortSpy, RabbitHarness


class Ping(Command):
    type_name = "tests.contract.Ping"
    n: int


class Shipped(Event):
    type_name = "tests.contract.Shipped"
    order_id: str


class NobodyHandles(Command):
    type_name = "tests.contract.NobodyHandles"


class GetQuote(Command):
    type_name = "tests.contract.GetQuote"
    sku: str
    delay: float = 0.0


class Quote(Event):
    type_name = "tests.contract.Quote"
    sku: str
    price_cents: int


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


async def test_command_is_handled_once(harness: Harness, queue_name: str) -> None:
    """A sent command reaches its one worker once, as attempt 1, with its key and fields."""
    seen: list[tuple[int, int, str]] = []

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            seen.append((msg.n, ctx.attempt, ctx.message_id))

    worker = await harness.start(PingWorker)
    key = await harness.bus.send(Ping(n=7), idempotency_key="ping-7")
    await harness.settle(worker)
    assert key == "ping-7"
    assert seen == [(7, 1, "ping-7")]
    assert worker.stats.handled == 1


async def test_event_reaches_every_subscriber(harness: Harness, queue_name: str) -> None:
    """An event is delivered once to each of two subscribed queues."""
    got: dict[str, list[str]] = {"a": [], "b": []}

    class SubscriberA(Worker):
        queue = f"{queue_name}.a"

        async def handle(self, msg: Shipped, ctx: Context) -> None:
            got["a"].append(msg.order_id)

    class SubscriberB(Worker):
        queue = f"{queue_name}.b"

        async def handle(self, msg: Shipped, ctx: Context) -> None:
            got["b"].append(msg.order_id)

    a, b = await harness.start(SubscriberA), await harness.start(SubscriberB)
    await harness.bus.publish(Shipped(order_id="o1"))
    await harness.settle(a, b)
    assert got == {"a": ["o1"], "b": ["o1"]}


async def test_transient_failure_retried_with_attempt_numbers(
    harness: Harness, queue_name: str
) -> None:
    """Fails on attempts 1 and 2, succeeds on 3; the DLQ stays empty."""
    attempts: list[int] = []

    class Flaky(Worker):
        queue = queue_name
        retry_base_delay = 0.05
        retry_max_delay = 0.2

        async def handle(self, msg: Ping, ctx: Context) -> None:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ConnectionError("dependency down")

    worker = await harness.start(Flaky)
    await harness.bus.send(Ping(n=1))
    await harness.settle(worker)
    assert attempts == [1, 2, 3]
    assert (worker.stats.retried, worker.stats.handled) == (2, 1)
    assert await harness.dead_letters(queue_name, 0) == []


async def test_both_buses_run_the_same_code_above_the_broker_port(
    harness: Harness, queue_name: str
) -> None:
    """Sending, retrying, replying and acking cross the broker port the same way on both
    buses: the in-memory bus is the Bus over another port, never a copy of its code."""
    for verb in ("send", "publish", "send_many", "request", "declare"):
        assert getattr(type(harness.bus), verb) is getattr(Bus, verb), verb
    spy = PortSpy(harness.bus.port)
    harness.bus.port = spy

    class FlakyEcho(Worker):
        queue = queue_name
        retry_base_delay = 0.05
        retry_max_delay = 0.2

        async def handle(self, msg: Ping, ctx: Context) -> int:
            if ctx.attempt < 2:
                raise ConnectionError("dependency down")
            return msg.n

    worker = await harness.start(FlakyEcho)
    assert await harness.bus.request(Ping(n=5), timeout=10, idempotency_key="same-1") == 5
    await harness.bus.send(Ping(n=6), idempotency_key="same-2")
    await harness.settle(worker)
    moves = names.moves_exchange(queue_name)
    sent = [p for p in spy.published if p[0] == names.COMMANDS_EXCHANGE]
    retried = [p for p in spy.published if p[0] == moves]
    replies = [p for p in spy.published if p[1].startswith(names.DIRECT_REPLY_TO)]
    assert spy.requested == [Ping.type_name]
    assert sent == [(names.COMMANDS_EXCHANGE, Ping.type_name, "same-2")]
    assert sorted(k for _, _, k in retried) == ["same-1", "same-2"]
    assert all(p[1].startswith(f"{queue_name}.retry.") for p in retried), retried
    assert [(p[0], p[2]) for p in replies] == [("", "reply-same-1")]
    assert spy.subscribed == [queue_name]
    [acker] = spy.ackers
    assert type(acker) is AckCoalescer
    assert acker.frames >= 1  # the acks went out through the coalescer, on both buses
    assert (worker.stats.retried, worker.stats.handled) == (2, 2)


async def test_permanent_error_dead_letters_with_reason(harness: Harness, queue_name: str) -> None:
    """PermanentError: one attempt, then the DLQ with reason permanent and the error text."""
    attempts: list[int] = []

    class Refuses(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            attempts.append(ctx.attempt)
            raise PermanentError("card declined")

    await harness.start(Refuses)
    key = await harness.bus.send(Ping(n=2))
    [dead] = await harness.dead_letters(queue_name, 1)
    assert attempts == [1]
    assert dead.message_id == key
    assert dead.headers[names.REASON] == "permanent"
    assert dead.headers[names.ERROR] == "PermanentError: card declined"
    assert dead.headers[names.ATTEMPTS] == 1
    assert dead.headers[names.ORIGINAL_QUEUE] == queue_name


async def test_invalid_bodies_dead_letter_as_invalid(harness: Harness, queue_name: str) -> None:
    """Not-JSON and schema-invalid bodies go to the DLQ with reason invalid, body intact."""
    handled: list[int] = []

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            handled.append(msg.n)

    await harness.start(PingWorker)
    await harness.inject(queue_name, b"{not json", type=Ping.type_name, message_id="bad-json")
    await harness.inject(queue_name, b'{"n": "x"}', type=Ping.type_name, message_id="bad-schema")
    dead = {m.message_id: m for m in await harness.dead_letters(queue_name, 2)}
    assert set(dead) == {"bad-json", "bad-schema"}
    assert all(m.headers[names.REASON] == "invalid" for m in dead.values())
    assert "not valid JSON" in dead["bad-json"].headers[names.ERROR]
    assert "schema invalid" in dead["bad-schema"].headers[names.ERROR]
    assert dead["bad-json"].body == b"{not json"
    assert handled == []


async def test_duplicate_key_is_handled_once(harness: Harness, queue_name: str) -> None:
    """The same idempotency key sent twice runs the handler once; the copy is acked."""
    seen: list[int] = []

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> None:
            seen.append(msg.n)

    worker = await harness.start(PingWorker)
    await harness.bus.send(Ping(n=1), idempotency_key="same-key")
    await harness.bus.send(Ping(n=1), idempotency_key="same-key")
    await harness.settle(worker)
    assert seen == [1]
    assert (worker.stats.handled, worker.stats.duplicates) == (1, 1)


async def test_unroutable_command_raises(harness: Harness) -> None:
    """A command no queue handles raises Unroutable instead of vanishing."""
    with pytest.raises(Unroutable, match="no queue is bound"):
        await harness.bus.send(NobodyHandles())


async def test_handler_publish_carries_conversation(harness: Harness, queue_name: str) -> None:
    """ctx.publish: the event keeps the correlation id, names its cause, gets a derived key."""
    seen: list[tuple[str, str | None, str]] = []

    class Shipper(Worker):
        queue = f"{queue_name}.ship"

        async def handle(self, msg: Ping, ctx: Context) -> None:
            await ctx.publish(Shipped(order_id=str(msg.n)))

    class Listener(Worker):
        queue = f"{queue_name}.listen"

        async def handle(self, msg: Shipped, ctx: Context) -> None:
            seen.append((ctx.correlation_id, ctx.causation_id, ctx.message_id))

    shipper, listener = await harness.start(Shipper), await harness.start(Listener)
    await harness.bus.send(Ping(n=5), idempotency_key="ping-5", correlation_id="conv-1")
    await harness.settle(shipper, listener)
    [(correlation, causation, key)] = seen
    assert (correlation, causation) == ("conv-1", "ping-5")
    assert key not in ("ping-5", "conv-1")


# ---- request/reply ---------------------------------------------------------------------


def _pricing(queue_name: str) -> type[Worker]:
    class Pricing(Worker):
        queue = queue_name
        prefetch = 50
        max_attempts = 1

        async def handle(self, msg: GetQuote, ctx: Context) -> Quote:
            if msg.sku == "bad":
                raise PermanentError("unknown sku")
            await asyncio.sleep(msg.delay)
            return Quote(sku=msg.sku, price_cents=len(msg.sku) * 100)

    return Pricing


async def test_request_returns_the_handlers_value(harness: Harness, queue_name: str) -> None:
    """The return value comes back parsed into reply_type, or as plain JSON without it."""
    await harness.start(_pricing(queue_name))
    quote = await harness.bus.request(GetQuote(sku="abc"), timeout=5, reply_type=Quote)
    assert quote == Quote(sku="abc", price_cents=300)
    raw = await harness.bus.request(GetQuote(sku="ab"), timeout=5)
    assert raw == {"sku": "ab", "price_cents": 200}


async def test_request_handler_sees_deadline_and_conversation(
    harness: Harness, queue_name: str
) -> None:
    """A request is an ordinary command to its handler: key, correlation id, a deadline."""
    seen: list[tuple[str, str, int | None]] = []

    class Echo(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> int:
            seen.append((ctx.message_id, ctx.correlation_id, ctx.deadline_ms))
            return msg.n * 2

    await harness.start(Echo)
    assert (
        await harness.bus.request(
            Ping(n=21), timeout=5, idempotency_key="req-1", correlation_id="conv-9"
        )
        == 42
    )
    [(key, correlation, deadline_ms)] = seen
    assert (key, correlation) == ("req-1", "conv-9")
    assert deadline_ms is not None


async def test_request_terminal_failure_raises_remote_error(
    harness: Harness, queue_name: str
) -> None:
    """PermanentError in the handler: RemoteError with reason and text (and the DLQ copy)."""
    await harness.start(_pricing(queue_name))
    with pytest.raises(RemoteError, match="unknown sku") as caught:
        await harness.bus.request(GetQuote(sku="bad"), timeout=5)
    assert caught.value.reason == "permanent"
    assert caught.value.error == "PermanentError: unknown sku"
    assert len(await harness.dead_letters(queue_name, 1)) == 1


async def test_request_answered_after_retries(harness: Harness, queue_name: str) -> None:
    """A transient failure is retried; the reply is the value of the attempt that succeeds."""

    class Flaky(Worker):
        queue = queue_name
        retry_base_delay = 0.05
        retry_max_delay = 0.2

        async def handle(self, msg: Ping, ctx: Context) -> int:
            if ctx.attempt < 3:
                raise ConnectionError("dependency down")
            return ctx.attempt

    await harness.start(Flaky)
    assert await harness.bus.request(Ping(n=1), timeout=10) == 3


async def test_request_to_silent_handler_times_out(harness: Harness, queue_name: str) -> None:
    """A handler that never returns: RequestTimeout after `timeout`, not a hang."""

    class Silent(Worker):
        queue = queue_name
        timeout = 60.0
        shutdown_grace = 0.2

        async def handle(self, msg: GetQuote, ctx: Context) -> Quote:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    await harness.start(Silent)
    with pytest.raises(RequestTimeout, match="no reply"):
        await harness.bus.request(GetQuote(sku="x"), timeout=0.5)


async def test_late_reply_is_discarded(harness: Harness, queue_name: str) -> None:
    """A reply after the timeout does no harm: the next request gets its own answer."""
    worker = await harness.start(_pricing(queue_name))
    with pytest.raises(RequestTimeout):
        await harness.bus.request(GetQuote(sku="slow", delay=0.6), timeout=0.2)
    await harness.settle(worker)  # the slow request is done: its late reply is dropped
    quote = await harness.bus.request(GetQuote(sku="ok"), timeout=5, reply_type=Quote)
    assert quote.sku == "ok"


async def test_concurrent_requests_are_correlated(harness: Harness, queue_name: str) -> None:
    """100 concurrent requests each get their own reply, even when replies come out of
    order."""
    await harness.start(_pricing(queue_name))
    skus = [f"s{'x' * (i % 7)}{i}" for i in range(100)]
    replies = await asyncio.gather(
        *(
            harness.bus.request(
                GetQuote(sku=sku, delay=(100 - i) * 0.003), timeout=10, reply_type=Quote
            )
            for i, sku in enumerate(skus)
        )
    )
    assert [(r.sku, r.price_cents) for r in replies] == [(s, len(s) * 100) for s in skus]


async def test_forged_reply_to_gets_no_reply(harness: Harness, queue_name: str) -> None:
    """A message whose reply_to names an ordinary queue is handled, but nothing is written
    there: replies go only to direct reply-to names."""
    handled: list[int] = []

    class PingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Ping, ctx: Context) -> int:
            handled.append(msg.n)
            return msg.n

    worker = await harness.start(PingWorker)
    victim = names.dlq_name(queue_name)  # an existing queue nobody consumes
    await harness.inject(
        queue_name, b'{"n": 5}', type=Ping.type_name, message_id="forged", reply_to=victim
    )
    await harness.settle(worker)
    assert handled == [5] and worker.stats.handled == 1
    assert await harness.dead_letters(queue_name, 0) == []
    assert worker.stats.replies_refused == 1


async def test_request_nobody_handles_is_unroutable(harness: Harness) -> None:
    """A request for a command no worker handles fails at once."""
    with pytest.raises(Unroutable, match="no queue handles"):
        await harness.bus.request(NobodyHandles(), timeout=5)
