"""What the demo watches: an observer queue for outcomes, queue depths, dead letters."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

from framework.bus import Bus
from framework.cli.demo.fleet import WORKERS
from framework.cli.demo.tally import Tally
from framework.consume.worker_spec import build_spec
from framework.context import Context
from framework.wire import names
from framework.worker import Worker
from schemas.notifications import ReceiptSent
from schemas.orders import OrderPlaced
from schemas.payments import PaymentFailed, PaymentSucceeded

OBSERVER_QUEUE = "demo.observer"


def observer(tally: Tally) -> type[Worker]:
    """A worker class recording this run's events into `tally`."""

    class DemoObserver(Worker):
        queue = OBSERVER_QUEUE
        service = "demo"
        prefetch = 256
        timeout = 5.0

        async def handle(
            self, msg: OrderPlaced | PaymentSucceeded | PaymentFailed | ReceiptSent, ctx: Context
        ) -> None:
            if not tally.mine(msg.order_id):
                return  # a leftover of an earlier run
            if isinstance(msg, OrderPlaced):
                tally.placed.add(msg.order_id)
            elif isinstance(msg, PaymentSucceeded):
                tally.settle(msg.order_id, "paid", time.perf_counter())
            elif isinstance(msg, PaymentFailed):
                tally.settle(msg.order_id, "declined", time.perf_counter())
            else:
                tally.receipts.add(msg.order_id)

    return DemoObserver


@dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    unacked_or_consumers: int
    retry: int
    dlq: int


class Depths:
    """Queue depths by passive declares on one channel (the broker pushes no depth events)."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self.baseline: dict[str, int] = {}

    async def _count(self, name: str) -> tuple[int, int]:
        # The raw channel: a robust channel answers repeated passive declares from its cache.
        underlay = await self._channel.get_underlay_channel()
        result = await underlay.queue_declare(name, passive=True)
        return result.message_count or 0, result.consumer_count or 0

    async def rows(self) -> list[QueueRow]:
        rows = []
        for cls in WORKERS:
            spec = build_spec(cls)
            ready, consumers = await self._count(spec.queue)
            retry = 0
            for tier in spec.policy.tiers_ms():
                retry += (await self._count(names.retry_queue_name(spec.queue, tier)))[0]
            dlq = (await self._count(names.dlq_name(spec.queue)))[0]
            rows.append(QueueRow(spec.queue, ready, consumers, retry, dlq))
        return rows

    async def all_consuming(self) -> bool:
        return all(row.unacked_or_consumers > 0 for row in await self.rows())

    async def remember_baseline(self) -> None:
        self.baseline = {row.name: row.dlq for row in await self.rows()}

    def new_dead(self, rows: list[QueueRow], *queues: str) -> int:
        return sum(r.dlq - self.baseline.get(r.name, 0) for r in rows if r.name in queues)


async def peek_dead_letters(bus: Bus, queue: str, tally: Tally) -> None:
    """Read `queue`'s DLQ without removing anything (unacked, requeued on channel close)."""
    channel = await bus.consume_channel(prefetch=0)
    try:
        declared = await channel.declare_queue(names.dlq_name(queue), passive=True)
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            order_id = _order_id(message.body)
            if order_id and tally.mine(order_id):
                headers = message.headers or {}
                reason = str(headers.get(names.REASON, "broker-dead-lettered"))
                tally.dead.setdefault(order_id, f"{queue}: {reason}")
    finally:
        await channel.close()


def _order_id(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(body).get("order_id")
        return value if isinstance(value, str) else None
    return None


async def delete_observer(bus: Bus, worker: type[Worker]) -> None:
    spec = build_spec(worker)
    channel = await bus.consume_channel(prefetch=0)
    try:
        for name in (
            spec.queue,
            names.dlq_name(spec.queue),
            *(names.retry_queue_name(spec.queue, t) for t in spec.policy.tiers_ms()),
        ):
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.queue_delete(name, if_unused=False, if_empty=False)
    finally:
        if not channel.is_closed:
            await channel.close()
