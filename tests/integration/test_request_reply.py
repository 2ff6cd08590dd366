"""Request/reply over direct reply-to: results, typed errors, timeouts, concurrency."""

from __future__ import annotations

import asyncio

import pytest

from framework import Bus, Command, Context, Event, PermanentError, Unroutable, Worker
from framework.errors import RemoteError, RequestTimeout


class GetQuote(Command):
    type_name = "tests.rr.GetQuote"
    sku: str
    delay: float = 0.0


class Quote(Event):
    type_name = "tests.rr.Quote"
    sku: str
    price_cents: int


class NobodyAnswers(Command):
    type_name = "tests.rr.NobodyAnswers"


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


async def test_reply_is_the_handlers_return_value(bus: Bus, worker_factory,
                                                  queue_name: str) -> None:
    """The handler's return value comes back, parsed into the reply type."""
    await worker_factory(_pricing(queue_name))
    quote = await bus.request(GetQuote(sku="abc"), timeout=5, reply_type=Quote)
    assert quote == Quote(sku="abc", price_cents=300)


async def test_concurrent_requests_are_correlated(bus: Bus, worker_factory,
                                                  queue_name: str) -> None:
    """100 concurrent requests each get their own answer, even when replies come out of order."""
    await worker_factory(_pricing(queue_name))
    skus = [f"s{'x' * (i % 7)}{i}" for i in range(100)]
    replies = await asyncio.gather(*(
        bus.request(GetQuote(sku=sku, delay=(100 - i) * 0.003), timeout=10, reply_type=Quote)
        for i, sku in enumerate(skus)
    ))
    assert [r.sku for r in replies] == skus


async def test_handler_error_comes_back_typed(bus: Bus, worker_factory, queue_name: str) -> None:
    """A terminal failure in the handler raises RemoteError with the reason, not a hang."""
    await worker_factory(_pricing(queue_name))
    with pytest.raises(RemoteError, match="unknown sku") as caught:
        await bus.request(GetQuote(sku="bad"), timeout=5)
    assert caught.value.reason == "permanent"


async def test_timeout_raises_and_late_reply_is_discarded(bus: Bus, worker_factory,
                                                          queue_name: str) -> None:
    """A slow handler makes the request time out; its late reply does no harm."""
    await worker_factory(_pricing(queue_name))
    with pytest.raises(RequestTimeout):
        await bus.request(GetQuote(sku="slow", delay=0.8), timeout=0.3)
    await asyncio.sleep(1.0)  # the late reply (if the worker still answered) arrives now
    quote = await bus.request(GetQuote(sku="ok"), timeout=5, reply_type=Quote)
    assert quote.sku == "ok"


async def test_request_nobody_handles_is_unroutable(bus: Bus) -> None:
    """A request for a command no worker handles fails at once."""
    with pytest.raises(Unroutable):
        await bus.request(NobodyAnswers(), timeout=5)


async def test_request_to_a_worker_that_never_answers_times_out(
    bus: Bus, worker_factory, queue_name: str
) -> None:
    """A handler that never returns makes the request raise RequestTimeout, not hang."""

    class Silent(Worker):
        queue = queue_name
        timeout = 60.0
        shutdown_grace = 0.5

        async def handle(self, msg: GetQuote, ctx: Context) -> Quote:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    await worker_factory(Silent)
    with pytest.raises(RequestTimeout, match="no reply"):
        await bus.request(GetQuote(sku="x"), timeout=1.0)
