"""Dead-letter queue operations: browse without losing anything, replay, purge.

Browsing takes messages with basic.get *without* acking and then gives every one of them
back, in order (`queue_borrow`); closing the channel would give back any left. (A quorum
queue counts such returns towards its delivery limit; `Q.dlq` has a limit of a million
and no dead-letter target, so browsing cannot lose a message there.) Replaying is a
confirmed publish to `Q` through the default exchange, then the ack of the DLQ copy: a
crash in between duplicates, which the worker's idempotency store absorbs; nothing is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from framework.errors import UnknownQueue
from framework.ops.dead_letter_headers import (
    DeadLetteredMessage,
    dead_letter_key,
    describe,
    replay_headers,
)
from framework.ops.failure_groups import group_of
from framework.ops.queue_borrow import Borrowing
from framework.wire import names
from framework.wire.envelope import Envelope, amqp_properties
from framework.wire.publisher import Publisher


@dataclass(frozen=True, slots=True)
class Selection:
    """Which DLQ messages an operation touches: those with `key` and in failure group `group`
    (any if None), up to `limit`."""

    limit: int | None = None
    key: str | None = None
    group: str | None = None

    def wants(self, message: AbstractIncomingMessage) -> bool:
        if self.key is not None and _key(message) != self.key:
            return False
        return self.group is None or group_of(_describe(message)) == self.group

    def full(self, taken: int) -> bool:
        return self.limit is not None and taken >= self.limit


def worker_queue(name: str) -> str:
    """Accept `Q` or `Q.dlq` on the command line; operations always name the worker queue."""
    return names.owner_queue(name) if name.endswith(".dlq") else name


@contextlib.asynccontextmanager
async def _open(connection: AbstractRobustConnection, queue: str) -> AsyncIterator[Borrowing]:
    """`Q.dlq` on a channel of its own; what was taken and not removed goes back in order
    (after an error, when the channel closes)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        try:
            dlq = await channel.declare_queue(names.dlq_name(queue), passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            raise UnknownQueue(
                f"unknown queue {queue!r}: it has no dead-letter queue {names.dlq_name(queue)!r}"
            ) from exc
        borrowing = Borrowing(channel, dlq)
        yield borrowing
        await borrowing.give_back()
    finally:
        if not channel.is_closed:
            await channel.close()


async def depth(connection: AbstractRobustConnection, queue: str) -> int:
    """Messages waiting in `Q.dlq`."""
    async with _open(connection, queue) as dlq:
        return dlq.depth


def _key(message: AbstractIncomingMessage) -> str:
    return dead_letter_key(message.message_id, message.type, message.body)


def _describe(message: AbstractIncomingMessage) -> DeadLetteredMessage:
    # x-delivery-count is the DLQ's own count of deliveries, i.e. of browses: not shown, so
    # browsing does not change what `list` and `show` print
    headers = {k: v for k, v in (message.headers or {}).items() if k != names.X_DELIVERY_COUNT}
    return describe(
        message_id=message.message_id,
        type_=message.type,
        correlation_id=message.correlation_id,
        headers=headers,
        timestamp=message.timestamp,
        body=message.body,
    )


async def browse(
    connection: AbstractRobustConnection, queue: str, selection: Selection = Selection()
) -> list[DeadLetteredMessage]:
    """Read DLQ messages in order without removing them (get without ack, close channel)."""
    found: list[DeadLetteredMessage] = []
    async with _open(connection, queue) as dlq:
        for _ in range(dlq.depth):  # bounded: never loop over messages put back meanwhile
            message = await dlq.take()
            if message is None:
                break
            if selection.wants(message):
                found.append(_describe(message))
                if selection.full(len(found)):
                    break
    return found


async def scan(
    connection: AbstractRobustConnection,
    queue: str,
    visit: Callable[[DeadLetteredMessage], None],
) -> int:
    """Show every DLQ message, in order, to `visit`, keeping none (browsing as `browse`
    does, so the queue is left as it was); returns how many were seen."""
    seen = 0
    async with _open(connection, queue) as dlq:
        for _ in range(dlq.depth):
            message = await dlq.take()
            if message is None:
                break
            visit(_describe(message))
            seen += 1
    return seen


def replay_envelope(message: AbstractIncomingMessage) -> Envelope:
    """The copy sent back to `Q`: same key, body, type and correlation; attempt reset to 1.

    A message without message_id (only the broker's own dead-lettering leaves one) is
    replayed under its content key, marked `fw-key-origin: content`: handled once, however
    often it is replayed, where replaying it keyless would only dead-letter it again."""
    headers = replay_headers(dict(message.headers or {}))
    if not message.message_id:
        headers[names.KEY_ORIGIN] = "content"
    return Envelope(
        message_id=_key(message),
        type=message.type or "",
        body=message.body,
        correlation_id=message.correlation_id or "",  # none: none written
        timestamp=message.timestamp,
        app_id=message.app_id,
        headers=headers,
    )


async def replay(
    connection: AbstractRobustConnection,
    queue: str,
    selection: Selection = Selection(),
    *,
    publish_timeout: float = 10.0,
    on_moved: Callable[[DeadLetteredMessage], None] | None = None,
) -> int:
    """Move selected messages from `Q.dlq` back to `Q` (confirmed publish, then ack)."""
    publisher = Publisher(connection, publish_timeout)
    moved = 0
    try:
        async with _open(connection, queue) as dlq:
            exchange = await _replay_exchange(connection, queue)
            for _ in range(dlq.depth):
                if selection.full(moved):
                    break
                message = await dlq.take()
                if message is None:
                    break
                if not selection.wants(message):
                    continue  # stays unacked: given back in its place at the end
                copy = replay_envelope(message)
                await publisher.publish_properties(
                    copy.body, amqp_properties(copy), exchange, queue, mandatory=True
                )
                await dlq.remove(message)
                moved += 1
                if on_moved is not None:
                    on_moved(_describe(message))
    finally:
        await publisher.close()
    return moved


async def _replay_exchange(connection: AbstractRobustConnection, queue: str) -> str:
    """Where a replay of `queue`'s dead letters is published (routing key `queue`): the
    default exchange into the queue itself; for an ordered worker, which has partition
    queues instead, its moves exchange, which passes them on to the partitions by their
    `fw-order-bucket` (framework.consume.ordering)."""
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            await channel.declare_queue(queue, passive=True)
        return ""
    except aio_pika.exceptions.ChannelNotFoundEntity:
        pass
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            await channel.declare_exchange(names.partitions_exchange(queue), passive=True)
        return names.moves_exchange(queue)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise UnknownQueue(f"unknown queue {queue!r}: nothing to replay into") from exc


async def purge(
    connection: AbstractRobustConnection,
    queue: str,
    count: int | None = None,
    *,
    group: str | None = None,
) -> int:
    """Delete the `count` oldest messages of `Q.dlq` (every one if None); returns how many.

    With a count, exactly those are deleted (taken with basic.get, acked one by one), so
    messages dead-lettered after the operator counted them stay; fewer are deleted only if
    someone else took some meanwhile. With a `group`, only that failure group's messages
    are deleted (the `count` oldest of them); the others stay, in their order.
    """
    async with _open(connection, queue) as dlq:
        if count is None and group is None:
            result = await dlq.queue.purge()
            return int(result.message_count or 0)
        removed = 0
        for _ in range(dlq.depth):
            if count is not None and removed >= count:
                break
            message = await dlq.take()
            if message is None:
                break
            if group is None or group_of(_describe(message)) == group:
                await dlq.remove(message)
                removed += 1
        return removed
