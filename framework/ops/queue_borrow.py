"""Taking messages from a queue to look at them, and giving back the ones not removed, in
their order.

Messages are taken with basic.get and not acked. Closing the channel would give them back
too, but a RabbitMQ 3.x quorum queue then requeues more than 32 of them in an arbitrary
order. Its channel also holds back returns and acks beyond 32 in flight and, if the channel
closes first, drops them: held-back returns come back in any order, held-back acks are
lost (a purge that acked 3,000 gets in chunks of 500 left 467 in the queue). So the kept
messages are given back explicitly, oldest first, 16 at a time, each batch once the queue
counts it as ready; removals are single acks, each followed by a synchronous get or the
give-back's own wait. If the queue does not count a batch in time (someone else consumes
it), or the connection fails, the rest go back when the channel closes: in some order, but
nothing is lost.
"""

from __future__ import annotations

import asyncio

import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

RETURN_BATCH = 16  # under the quorum queue client's 32 commands in flight
RETURN_WAIT = 5.0  # seconds for the queue to count one batch as ready


class Borrowing:
    """Messages taken from `queue` on `channel`: `take`, `remove` some, `give_back` the rest."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self.queue = queue
        self._channel = channel
        self._kept: list[int] = []  # delivery tags taken and not removed, oldest first

    @property
    def depth(self) -> int:
        """Messages ready when the queue was opened."""
        return self.queue.declaration_result.message_count or 0

    async def take(self) -> AbstractIncomingMessage | None:
        """The next ready message (kept unless removed), or None if there is none."""
        message = await self.queue.get(no_ack=False, fail=False)
        if message is not None and message.delivery_tag is not None:
            self._kept.append(message.delivery_tag)
        return message

    async def remove(self, message: AbstractIncomingMessage) -> None:
        """Delete a taken message from the queue (a single ack: never `multiple`)."""
        await message.ack()
        tag = message.delivery_tag
        if tag is None:
            return
        if self._kept and self._kept[-1] == tag:
            self._kept.pop()
        else:
            self._kept.remove(tag)

    async def give_back(self) -> bool:
        """Requeue every kept message in the order taken; False if the queue stopped
        counting them or the channel failed (its close then returns the rest)."""
        if not self._kept:
            return True
        try:
            amqp = await self._channel.get_underlay_channel()
            ready = await self._ready(amqp)
            for start in range(0, len(self._kept), RETURN_BATCH):
                batch = self._kept[start : start + RETURN_BATCH]
                await amqp.basic_nack(batch[-1], multiple=True, requeue=True)
                ready += len(batch)
                if not await self._ready_reaches(amqp, ready):
                    return False
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ):
            return False  # the order is lost, not the messages: the channel's close returns them
        self._kept.clear()
        return True

    async def _ready(self, amqp: aiormq.abc.AbstractChannel) -> int:
        # on the AMQP channel itself: a robust channel answers a passive declare from its cache
        declared = await amqp.queue_declare(self.queue.name, passive=True)
        return declared.message_count or 0

    async def _ready_reaches(self, amqp: aiormq.abc.AbstractChannel, count: int) -> bool:
        pause = 0.001
        try:
            async with asyncio.timeout(RETURN_WAIT):
                while await self._ready(amqp) < count:
                    await asyncio.sleep(pause)  # the broker applies returns asynchronously
                    pause = min(pause * 2, 0.05)
        except TimeoutError:
            return False
        return True
