"""Applying a settlement: confirmed publish to the retry or dead-letter queue, then ack.

A crash between the publish and the ack can duplicate a message (idempotency absorbs it);
nothing is ever acked before its replacement is confirmed, so nothing is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import aio_pika
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from framework import names
from framework.delivery import Incoming
from framework.envelope import Envelope, to_amqp
from framework.errors import PublishFailed
from framework.settlement import Ack, DeadLetter, Retry, Settlement
from framework.transport import MessagePublisher

AckFn = Callable[[Incoming], Awaitable[None]]


async def _ack_now(incoming: Incoming) -> None:
    await incoming.ack()


async def settle_or_return(
    settlement: Settlement,
    incoming: Incoming,
    envelope: Envelope,
    queue: str,
    publisher: MessagePublisher,
    *,
    ack: AckFn = _ack_now,
    on_return: Callable[[Incoming], None] | None = None,
    attempts: int = 3,
) -> None:
    """Apply `settlement`, retrying a move the broker did not confirm (e.g. during a memory
    alarm); if it still fails, give the delivery back to the queue (nack, requeue) rather
    than leave it unacked on a channel that stays open. Re-raises the last error."""
    try:
        try:  # the common case: it works the first time, no retry machinery
            await apply_settlement(settlement, incoming, envelope, queue, publisher, ack)
            return
        except PublishFailed:
            if attempts <= 1:
                raise
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(PublishFailed),
            stop=stop_after_attempt(attempts - 1),
            wait=wait_random_exponential(multiplier=0.5, max=5.0),
            reraise=True,
        ):
            with attempt:
                await apply_settlement(settlement, incoming, envelope, queue, publisher, ack)
    except Exception:
        if on_return is not None:
            on_return(incoming)
        with contextlib.suppress(Exception):  # a dead channel returns it to the queue anyway
            await incoming.nack(requeue=True)
        raise


async def apply_settlement(
    settlement: Settlement,
    incoming: Incoming,
    envelope: Envelope,
    queue: str,
    publisher: MessagePublisher,
    ack: AckFn = _ack_now,
) -> None:
    """Carry out `settlement` for `incoming`: the confirmed move, then `ack`.

    Raises if the move could not be confirmed (and then does not ack).
    """
    match settlement:
        case Ack():
            pass
        case Retry(delay_ms=delay_ms, tier_ms=tier_ms, next_attempt=next_attempt, error=error):
            headers = {**envelope.headers, names.ERROR: error}
            if settlement.deferrals is not None:
                headers[names.DEFERRALS] = settlement.deferrals
            else:  # a failed attempt ends a run of deferrals
                headers.pop(names.DEFERRALS, None)
            retried = replace(envelope, attempt=next_attempt, headers=headers)
            await publisher.publish(
                to_amqp(retried, expiration_ms=delay_ms),
                "",
                names.retry_queue_name(queue, tier_ms),
            )
        case DeadLetter():
            await publisher.publish(dead_letter_message(envelope, settlement, queue), "",
                                    names.dlq_name(queue))
    await ack(incoming)


def dead_letter_message(envelope: Envelope, settlement: DeadLetter, queue: str) -> aio_pika.Message:
    """The DLQ copy of a message: body and identity intact, the reason in `fw-` headers."""
    headers = {
        **envelope.headers,
        names.REASON: settlement.reason.value,
        names.ERROR: settlement.error[:1000],
        names.ATTEMPTS: settlement.attempts,
        names.ORIGINAL_QUEUE: queue,
        names.FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return to_amqp(replace(envelope, headers=headers))
