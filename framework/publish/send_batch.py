"""Sending many messages with a window of unconfirmed publishes, and the fate of each.

`send_batch` is shared by `Bus.send_many` (on either broker port) and `framework send
--count`: every message ends with a `SendResult` that names its key and what happened
(confirmed, the error that refused it, or not sent because the batch stopped), so a caller
can send exactly the unconfirmed ones again under the same keys (no duplicates downstream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from framework.errors import (
    Overloaded,
    PublishFailed,
    PublishTimeout,
    SendManyFailed,
    SendManyOverloaded,
    SendManyTimeout,
    SendManyUnroutable,
    Unroutable,
)
from framework.publish.send_results import SendResult

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Item(Generic[T]):
    index: int
    message: T
    key: str


async def send_batch(
    emit: Callable[[T, str], Awaitable[object]],
    messages: Sequence[T],
    keys: Sequence[str],
    *,
    window: int,
    stop_on_failure: bool = True,
    on_result: Callable[[SendResult], None] | None = None,
) -> list[SendResult]:
    """`emit(message, key)` for each message, at most `window` awaiting a confirm at once.

    With `stop_on_failure`, the first failure stops new sends: those in flight finish and
    the rest are `not-sent`. Never raises for a message's failure; returns one result per
    message, in order.
    """
    if len(keys) != len(messages):
        raise ValueError("idempotency_keys must match commands one to one")
    results: list[SendResult | None] = [None] * len(messages)
    pending = iter([_Item(i, m, k) for i, (m, k) in enumerate(zip(messages, keys, strict=True))])
    failed = False

    def record(result: SendResult) -> None:
        results[result.index] = result
        if on_result is not None:
            on_result(result)

    async def lane() -> None:
        nonlocal failed
        for item in pending:
            if failed and stop_on_failure:
                record(SendResult(item.index, item.key, sent=False))
                continue
            try:
                await emit(item.message, item.key)
            except Exception as exc:  # noqa: BLE001 - recorded in the item's SendResult
                failed = True
                record(SendResult(item.index, item.key, exc))
            else:
                record(SendResult(item.index, item.key))

    await asyncio.gather(*(lane() for _ in range(max(1, min(window, len(messages))))))
    return [r for r in results if r is not None]


def raise_for_failures(results: Sequence[SendResult]) -> list[str]:
    """The keys in order if every message was confirmed, else a `SendManyFailed` whose type
    also matches the first failure (`Unroutable`, `Overloaded`, `PublishTimeout`)."""
    unconfirmed = [r for r in results if not r.confirmed]
    if not unconfirmed:
        return [r.key for r in results]
    first = next(r for r in unconfirmed if r.error is not None)
    error = first.error
    counts: dict[str, int] = {}
    for r in unconfirmed:
        counts[r.fate] = counts.get(r.fate, 0) + 1
    summary = ", ".join(f"{n} {fate}" for fate, n in counts.items())
    text = (
        f"{len(unconfirmed)} of {len(results)} messages not confirmed ({summary}); first: "
        f"{first.key}: {error}; send `.unconfirmed` again with the same keys"
    )
    kind: type[SendManyFailed] = SendManyFailed
    if isinstance(error, Unroutable):
        kind = SendManyUnroutable
    elif isinstance(error, Overloaded):
        kind = SendManyOverloaded
    elif isinstance(error, PublishTimeout):
        kind = SendManyTimeout
    routing_key = error.routing_key if isinstance(error, PublishFailed) else ""
    raise kind(
        text, results=list(results), routing_key=routing_key, message_id=first.key
    ) from error
