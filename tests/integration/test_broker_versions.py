"""Where RabbitMQ 3.10 and 4.x differ, the framework gives the same guarantees on both.

`make test` runs this file on 3.10 and on 4.0 (scripts/on-broker); each test names the
difference it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from framework import Bus, Command, Context, MessageTooLarge, PermanentError, Worker
from framework.consume.worker_spec import build_spec
from framework.ops.dlq import browse
from framework.testing import BrokerAdmin
from framework.wire import names
from framework.wire.message_size import MIB


class Chore(Command):
    type_name = "tests.versions.Chore"
    n: int


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def declared(bus: Bus, admin: BrokerAdmin, worker: type[Worker]) -> AsyncIterator[None]:
    """The worker's topology for the block, deleted afterwards."""
    spec = build_spec(worker)
    await bus.declare(worker)
    try:
        yield
    finally:
        await admin.delete_worker_queues(spec.queue, spec.policy.tiers_ms())


async def test_listing_a_dlq_many_times_loses_nothing(
    bus: Bus, broker_admin: BrokerAdmin, connection: AbstractRobustConnection, queue_name: str
) -> None:
    """`dlq list` reads and returns; every return counts as a delivery, and a 4.x quorum
    queue without its own limit drops a message after 20 (the DLQ has no dead-letter
    target): the DLQ declares a limit of its own, so 25 listings keep the message."""

    class ChoreWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Chore, ctx: Context) -> None:
            raise PermanentError("never")

    async with declared(bus, broker_admin, ChoreWorker):
        dlq = names.dlq_name(queue_name)
        await broker_admin.publish_raw(dlq, b'{"n": 1}', type=Chore.type_name, message_id="dead-1")
        for listing in range(25):
            # a returned message is counted again a few ms after the channel closes
            assert await broker_admin.wait_for_depth(dlq, 1) == 1, f"lost after {listing}"
            rows = await browse(connection, queue_name)
            assert [r.key for r in rows] == ["dead-1"], f"listing {listing + 1}"
        assert await broker_admin.wait_for_depth(dlq, 1) == 1


async def test_a_dlq_declared_by_an_earlier_version_is_kept(
    bus: Bus, broker_admin: BrokerAdmin, connection: AbstractRobustConnection, queue_name: str
) -> None:
    """A DLQ that exists without the delivery limit (declared before it was added) does not
    stop the worker from starting: its arguments are kept and it keeps its messages."""

    class ChoreWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Chore, ctx: Context) -> None:
            raise PermanentError("never")

    dlq = names.dlq_name(queue_name)
    async with connection.channel() as channel:
        await channel.declare_queue(dlq, durable=True, arguments={"x-queue-type": "quorum"})
    await broker_admin.publish_raw(dlq, b'{"n": 1}', type=Chore.type_name, message_id="old-1")
    async with declared(bus, broker_admin, ChoreWorker):
        assert await broker_admin.depth(dlq) == 1
        await bus.send(Chore(n=2), idempotency_key="new-2")
        assert await broker_admin.wait_for_depth(queue_name, 1) == 1


class Parcel(Command):
    type_name = "tests.versions.Parcel"
    blob: str


async def test_a_body_above_16_mib_is_refused_at_once_and_one_below_goes_through(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """RabbitMQ 4.x refuses bodies above 16 MiB by closing the channel (seen only as a
    publish timeout); the bus refuses them itself, at once, on both brokers, and a 15 MiB
    body is confirmed and stored on both."""

    class ParcelWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Parcel, ctx: Context) -> None:
            pass

    async with declared(bus, broker_admin, ParcelWorker):
        started = time.monotonic()
        with pytest.raises(MessageTooLarge, match=r"above the 16 MiB the broker accepts"):
            await bus.send(Parcel(blob="x" * (16 * MIB + 1)), timeout=30)
        assert time.monotonic() - started < 5  # refused, not timed out
        await bus.send(Parcel(blob="y" * (15 * MIB)), timeout=30)
        assert await broker_admin.wait_for_depth(queue_name, 1) == 1


async def test_listing_a_delivery_limit_death_reports_the_same_attempts_each_time(
    bus: Bus, broker_admin: BrokerAdmin, connection: AbstractRobustConnection, queue_name: str
) -> None:
    """A message the broker dead-letters at the delivery limit (a crash loop) is listed with
    reason delivery-limit and the same attempts on every listing: the DLQ's own
    x-delivery-count counts listings (3.10 starts it at 0, 4.0 omits it at first), so it is
    not read as attempts."""

    class CrashWorker(Worker):
        queue = queue_name
        delivery_limit = 2

        async def handle(self, msg: Chore, ctx: Context) -> None:
            raise PermanentError("never")

    async with declared(bus, broker_admin, CrashWorker):
        await bus.send(Chore(n=1), idempotency_key="crash-1")
        for _ in range(3):  # delivered and returned, as by a worker process that crashes
            async with connection.channel() as channel:
                queue = await channel.declare_queue(queue_name, passive=True)
                assert await broker_admin.wait_for_depth(queue_name, 1) == 1
                message = await queue.get(no_ack=False)
                await message.nack(requeue=True)
        dlq = names.dlq_name(queue_name)
        seen = []
        for _ in range(3):
            assert await broker_admin.wait_for_depth(dlq, 1) == 1
            (row,) = await browse(connection, queue_name)
            seen.append((row.key, row.reason, row.attempts))
        assert seen == [("crash-1", "delivery-limit", 1)] * 3


async def test_client_set_x_headers_never_decide_a_dead_letters_reason(
    bus: Bus, broker_admin: BrokerAdmin, connection: AbstractRobustConnection, queue_name: str
) -> None:
    """3.10 keeps a publisher's own `x-death` / `x-first-death-reason`, 4.x drops them: the
    framework's `fw-` headers decide reason and attempts, so both report the same."""

    class ChoreWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Chore, ctx: Context) -> None:
            raise PermanentError("refused")

    forged = {
        "x-death": [{"count": 9, "reason": "expired", "queue": "elsewhere"}],
        "x-first-death-reason": "expired",
        "fw-attempt": 2,
    }
    async with declared(bus, broker_admin, ChoreWorker):
        worker = ChoreWorker(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await broker_admin.publish_raw(
                queue_name,
                b'{"n": 1}',
                type=Chore.type_name,
                message_id="forged-1",
                headers=forged,
                content_type="application/json",
            )
            dlq = names.dlq_name(queue_name)
            assert await broker_admin.wait_for_depth(dlq, 1) == 1
        finally:
            await worker.stop()
            await task
        (row,) = await browse(connection, queue_name)
        assert (row.key, row.reason, row.attempts) == ("forged-1", "permanent", 2)
