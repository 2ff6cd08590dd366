"""Scheduled sends in the in-memory broker: held on its virtual clock, then published.

RabbitMQ holds a scheduled command in the countdown queues (`framework.scheduling`); the
memory broker holds it here until the virtual clock reaches its due time, then publishes it
to the exchange it would enter then (`fw.commands`), not mandatory, as dead-lettering is.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING

import aio_pika

from framework import names
from framework.envelope import Envelope, to_amqp
from framework.scheduling import UNIT_MS, delay_units, scheduled

if TYPE_CHECKING:
    from framework.testing.memory_broker import MemoryBroker


class HeldMessages:
    """Messages waiting for their due time (virtual seconds), earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str, aio_pika.Message]] = []
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, due: float, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """Keep `message` until `due`, then it goes to `exchange` with `routing_key`."""
        heapq.heappush(self._heap, (due, next(self._seq), exchange, routing_key, message))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def release(self, now: float) -> list[tuple[str, str, aio_pika.Message]]:
        """Remove and return (exchange, routing key, message) of everything due by `now`.

        Its `fw-not-before` becomes the real time of release: the virtual clock ran ahead of
        the real one, and a worker reading the header against the real clock must see the
        command as due (it is, on the clock its delays run on)."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, _, exchange, routing_key, message = heapq.heappop(self._heap)
            headers = message.headers
            if headers is not None and names.NOT_BEFORE in headers:
                headers[names.NOT_BEFORE] = time.time()
            due.append((exchange, routing_key, message))
        return due

    def messages(self) -> list[aio_pika.Message]:
        """What is held, earliest due first (not removed)."""
        return [entry[4] for entry in sorted(self._heap)]


def hold(
    broker: MemoryBroker, envelope: Envelope, expiration: int | None, exchange: str, delay: float
) -> None:
    """Hold a message sent with `delay` (seconds) as the countdown would: with the same
    headers, due after the same rounded delay on the broker's virtual clock."""
    envelope, _ = scheduled(envelope, exchange, delay)
    due = broker.now + delay_units(delay) * UNIT_MS / 1000
    broker.held.hold(due, exchange, envelope.type, to_amqp(envelope, expiration_ms=expiration))
    broker.changed()
