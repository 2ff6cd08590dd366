"""Applying a settlement when the broker refuses the copy: a smaller copy, never a loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from framework import MessageRefused
from framework.consume.decisions import DeadLetter, Reason, Retry
from framework.consume.settle import settle_or_return
from framework.wire import names
from framework.wire.envelope import Envelope


@dataclass
class RefusingPublisher:
    """Refuses every copy that still carries the sender's header `big`."""

    sent: list[tuple[Envelope, str]] = field(default_factory=list)

    async def publish(
        self,
        message: Envelope,
        exchange: str,
        routing_key: str,
        *,
        expiration_ms: int | None = None,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        if "big" in (message.headers or {}):
            raise MessageRefused("its header frame is too large", routing_key=routing_key)
        self.sent.append((message, routing_key))


@dataclass
class FakeDelivery:
    """The Incoming shape: records how it was settled."""

    acked: bool = False
    nacked: bool = False
    body: bytes = b"{}"
    delivery_tag: int | None = 1
    channel: Any = None
    redelivered: bool | None = False
    message_id: str | None = "k"
    correlation_id: str | None = "c"
    type: str | None = "t"
    app_id: str | None = None
    reply_to: str | None = None
    timestamp: datetime | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)

    async def ack(self, multiple: bool = False) -> None:
        self.acked = True

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.nacked = True


ENVELOPE = Envelope("k", "t", b"{}", "c", headers={"big": "x" * 100})


@pytest.mark.parametrize(
    "settlement",
    [
        Retry(delay_ms=100, tier_ms=100, next_attempt=2, error="ValueError: boom"),
        DeadLetter(Reason.EXHAUSTED, "ValueError: boom", 1),
    ],
)
async def test_refused_copy_is_dead_lettered_without_the_senders_headers(
    settlement: Retry | DeadLetter,
) -> None:
    """A retry or DLQ copy the broker refuses goes to the DLQ once, without the sender's
    headers and saying why; the delivery is acked, not returned to be refused again."""
    publisher, delivery = RefusingPublisher(), FakeDelivery()
    await settle_or_return(settlement, delivery, ENVELOPE, "q", publisher)
    ((message, routing_key),) = publisher.sent
    assert routing_key == names.dlq_name("q") and delivery.acked and not delivery.nacked
    error = str((message.headers or {})[names.ERROR])
    assert error.startswith("copy refused by the broker") and "ValueError: boom" in error
    expected = Reason.INVALID if isinstance(settlement, Retry) else Reason.EXHAUSTED
    assert (message.headers or {})[names.REASON] == expected.value
