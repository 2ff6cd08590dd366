"""Applying a settlement: confirmed publish to the retry or dead-letter queue, then ack.

A crash between the publish and the ack can duplicate a message (idempotency absorbs it);
nothing is ever acked before its replacement is confirmed, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import UTC, datetime

from tenacity import retry_if_exception_type, retry_if_not_exception_type

from framework.consume.decisions import Ack, DeadLetter, Reason, Retry, Settlement
from framework.consume.not_before import not_before_header
from framework.errors import MessageRefused, PublishFailed
from framework.resilience.retrying import SETTLE_MOVE
from framework.wire import names
from framework.wire.delivery import Incoming
from framework.wire.envelope import Envelope
from framework.wire.header_limits import bound_text, copyable
from framework.wire.port import Acker, EnvelopePublisher


class AckEach:
    """The `Acker` that acks every delivery at once, on its own (no coalescing)."""

    def delivered(self, incoming: Incoming) -> None:
        """Nothing to track."""

    async def ack(self, incoming: Incoming) -> None:
        await incoming.ack()

    def abandoned(self, incoming: Incoming) -> None:
        """Nothing to forget."""

    async def close(self) -> None:
        """Nothing pending."""


ACK_EACH = AckEach()


async def settle_or_return(
    settlement: Settlement,
    incoming: Incoming,
    envelope: Envelope,
    queue: str,
    publisher: EnvelopePublisher,
    *,
    acker: Acker = ACK_EACH,
    attempts: int = SETTLE_MOVE.attempts or 3,
) -> None:
    """Apply `settlement`, retrying a move the broker did not confirm (e.g. during a memory
    alarm); if it still fails, give the delivery back to the queue (nack, requeue) rather
    than leave it unacked on a channel that stays open. Re-raises the last error."""
    try:
        try:  # the common case: it works the first time, no retry machinery
            await apply_settlement(settlement, incoming, envelope, queue, publisher, acker)
            return
        except MessageRefused as exc:  # resending the same copy cannot help: a smaller one
            settlement = _refused(settlement, envelope, exc)
            await apply_settlement(
                settlement, incoming, replace(envelope, headers={}), queue, publisher, acker
            )
            return
        except PublishFailed:
            if attempts <= 1:
                raise
        # the first attempt was made above: the policy's waits start after it
        rest = replace(SETTLE_MOVE, attempts=attempts - 1)
        async for attempt in rest.retrying(
            retry_if_exception_type(PublishFailed) & retry_if_not_exception_type(MessageRefused)
        ):
            with attempt:
                await apply_settlement(settlement, incoming, envelope, queue, publisher, acker)
    except Exception:
        acker.abandoned(incoming)
        with contextlib.suppress(Exception):  # a dead channel returns it to the queue anyway
            await incoming.nack(requeue=True)
        raise


def _refused(settlement: Settlement, envelope: Envelope, exc: MessageRefused) -> DeadLetter:
    """The broker cannot take the copy as it is: dead-letter it without the sender's headers
    (the only part of a copy that can make it too large), saying why, rather than have it
    redelivered until the delivery limit."""
    if isinstance(settlement, DeadLetter):
        reason, last = settlement.reason, settlement.error
    else:
        reason, last = Reason.INVALID, settlement.error if isinstance(settlement, Retry) else ""
    note = f"copy refused by the broker, sent without the sender's headers: {exc}"
    return DeadLetter(
        reason, bound_text(f"{note}; error: {last}" if last else note), envelope.attempt
    )


async def apply_settlement(
    settlement: Settlement,
    incoming: Incoming,
    envelope: Envelope,
    queue: str,
    publisher: EnvelopePublisher,
    acker: Acker = ACK_EACH,
) -> None:
    """Carry out `settlement` for `incoming`: the confirmed move (through the queue's own
    moves exchange, see `names.moves_exchange`), then the ack (`acker`).

    Raises if the move could not be confirmed (and then does not ack).
    """
    match settlement:
        case Ack():
            pass
        case Retry(tier_ms=tier_ms):
            await publisher.publish(
                retry_copy(envelope, settlement),
                names.moves_exchange(queue),
                names.retry_queue_name(queue, tier_ms),
                expiration_ms=settlement.delay_ms,
            )
        case DeadLetter():
            await publisher.publish(
                dead_letter_copy(envelope, settlement, queue),
                names.moves_exchange(queue),
                names.dlq_name(queue),
            )
    await acker.ack(incoming)


def retry_copy(envelope: Envelope, settlement: Retry) -> Envelope:
    """The retry copy: the next attempt, the last error in `fw-error` (it expires after
    `settlement.delay_ms`)."""
    headers = {**copyable(envelope.headers), names.ERROR: bound_text(settlement.error)}
    if settlement.deferrals is not None:
        headers[names.DEFERRALS] = settlement.deferrals
    else:  # a failed attempt ends a run of deferrals
        headers.pop(names.DEFERRALS, None)
    if settlement.retry_later is not None:
        headers[names.RETRY_LATER] = settlement.retry_later
    if settlement.not_before_in_ms is not None:  # stamped now, when the wait starts
        headers[names.NOT_BEFORE] = not_before_header(
            time.time() + settlement.not_before_in_ms / 1000
        )
    else:
        headers.pop(names.NOT_BEFORE, None)
    return replace(envelope, attempt=settlement.next_attempt, headers=headers)


def dead_letter_copy(envelope: Envelope, settlement: DeadLetter, queue: str) -> Envelope:
    """The DLQ copy of a message: body and identity intact, the reason in `fw-` headers."""
    headers = {
        **copyable(envelope.headers),
        names.REASON: settlement.reason.value,
        names.ERROR: bound_text(settlement.error),
        names.ATTEMPTS: settlement.attempts,
        names.ORIGINAL_QUEUE: queue,
        names.FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return replace(envelope, headers=headers)
