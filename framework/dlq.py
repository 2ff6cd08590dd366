"""Dead-letter queue operations: browse without losing anything, replay, purge.

Browsing takes messages with basic.get *without* acking and then closes the channel, so
the broker puts every one of them back. (A quorum queue counts such returns towards its
delivery limit; `Q.dlq` has no dead-letter target and on RabbitMQ 3.x no default limit,
so browsing cannot lose a message there.) Replaying is a confirmed publish to `Q` through
the default exchange, then the ack of the DLQ copy: a crash in between duplicates, which
the worker's idempotency store absorbs; nothing is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from framework import names
from framework.dead_letters import DeadLetteredMessage, dead_letter_key, describe, replay_headers
from framework.errors import UnknownQueue
from framework.publisher import Publisher


@dataclass(frozen=True, slots=True)
class Selection:
    """Which DLQ messages an operation touches: those with `key` (any if None), up to `limit`."""

    limit: int | None = None
    key: str | None = None

    def wants(self, message: AbstractIncomingMessage) -> bool:
        return self.key is None or _key(message) == self.key

    def full(self, taken: int) -> bool:
        return self.limit is not None and taken >= self.limit


def worker_queue(name: str) -> str:
    """Accept `Q` or `Q.dlq` on the command line; operations always name the worker queue."""
    return names.owner_queue(name) if name.endswith(".dlq") else name


@contextlib.asynccontextmanager
async def _open(connection: AbstractRobustConnection, queue: str) -> AsyncIterator[AbstractQueue]:
    """A channel with `Q.dlq` passively declared; closing it returns unacked messages."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        try:
            dlq = await channel.declare_queue(names.dlq_name(queue), passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            raise UnknownQueue(
                f"unknown queue {queue!r}: it has no dead-letter queue {names.dlq_name(queue)!r}"
            ) from exc
        yield dlq
    finally:
        if not channel.is_closed:
            await channel.close()


def _depth(queue: AbstractQueue) -> int:
    return queue.declaration_result.message_count or 0


async def depth(connection: AbstractRobustConnection, queue: str) -> int:
    """Messages waiting in `Q.dlq`."""
    async with _open(connection, queue) as dlq:
        return _depth(dlq)


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
        for _ in range(_depth(dlq)):  # bounded: never loop over messages put back meanwhile
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            if selection.wants(message):
                found.append(_describe(message))
                if selection.full(len(found)):
                    break
    return found


def replay_message(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The copy sent back to `Q`: same key, body, type and correlation; attempt reset to 1.

    A message without message_id (only the broker's own dead-lettering leaves one) is
    replayed under its content key, marked `fw-key-origin: content`: handled once, however
    often it is replayed, where replaying it keyless would only dead-letter it again."""
    headers = replay_headers(dict(message.headers or {}))
    if not message.message_id:
        headers[names.KEY_ORIGIN] = "content"
    return aio_pika.Message(
        body=message.body,
        message_id=_key(message),
        correlation_id=message.correlation_id,
        type=message.type,
        content_type=message.content_type or names.CONTENT_TYPE,
        timestamp=message.timestamp or datetime.now(UTC),
        app_id=message.app_id,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
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
            await _require_queue(connection, queue)
            for _ in range(_depth(dlq)):
                if selection.full(moved):
                    break
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                if not selection.wants(message):
                    continue  # stays unacked: back in the DLQ when the channel closes
                await publisher.publish(replay_message(message), "", queue, mandatory=True)
                await message.ack()
                moved += 1
                if on_moved is not None:
                    on_moved(_describe(message))
    finally:
        await publisher.close()
    return moved


async def _require_queue(connection: AbstractRobustConnection, queue: str) -> None:
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise UnknownQueue(f"unknown queue {queue!r}: nothing to replay into") from exc


PURGE_CHUNK = 500  # deliveries taken before one multiple ack deletes them


async def purge(connection: AbstractRobustConnection, queue: str, count: int | None = None) -> int:
    """Delete the `count` oldest messages of `Q.dlq` (every one if None); returns how many.

    With a count, exactly those are deleted (taken with basic.get, acked in chunks), so
    messages dead-lettered after the operator counted them stay; fewer are deleted only if
    someone else took some meanwhile.
    """
    async with _open(connection, queue) as dlq:
        if count is None:
            result = await dlq.purge()
            return int(result.message_count or 0)
        removed = 0
        dry = False
        while removed < count and not dry:
            last: AbstractIncomingMessage | None = None
            for _ in range(min(PURGE_CHUNK, count - removed)):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    dry = True
                    break
                last = message
                removed += 1
            if last is not None:
                await last.ack(multiple=True)
        return removed
