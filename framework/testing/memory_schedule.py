"""Scheduled sends in the in-memory broker: held on its virtual clock until due.

RabbitMQ holds a scheduled command in the countdown queues (`framework.publish.scheduling`); the
memory broker holds what is published to the countdown's entry exchange here, for the delay
its `fw-schedule-<k>` headers count, and then routes it as the countdown's last stage would
(to `fw.commands`, not mandatory, as dead-lettering is).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from framework.publish.scheduling import STAGES, UNIT_MS, stage_header

T = TypeVar("T")


def countdown_delay(headers: Mapping[str, Any]) -> float:
    """The delay (seconds) a message's countdown headers spell: bit k from stage k."""
    units = sum(1 << k for k in range(STAGES) if headers.get(stage_header(k)) == "1")
    return units * UNIT_MS / 1000


class HeldMessages(Generic[T]):
    """Messages waiting for their due time (virtual seconds), earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, T]] = []
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, due: float, routing_key: str, message: T) -> None:
        """Keep `message` until `due`, then it is routed with `routing_key`."""
        heapq.heappush(self._heap, (due, next(self._seq), routing_key, message))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def release(self, now: float) -> list[tuple[str, T]]:
        """Remove and return (routing key, message) of everything due by `now`."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, _, routing_key, message = heapq.heappop(self._heap)
            due.append((routing_key, message))
        return due

    def messages(self) -> list[T]:
        """What is held, earliest due first (not removed)."""
        return [entry[3] for entry in sorted(self._heap, key=lambda entry: entry[:2])]
