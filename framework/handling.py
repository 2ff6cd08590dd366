"""Processing one delivery up to its outcome: deadline, decoding, idempotency, the handler.

Never acks or publishes to retry/DLQ itself; it returns an `Outcome` for `settlement.decide`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from framework.breaker import CircuitOpenError
from framework.context import Context
from framework.deadlines import handler_budget, is_expired
from framework.envelope import Envelope, decode_body
from framework.errors import InvalidMessage, PermanentError
from framework.idempotency import ClaimResult, IdempotencyStore
from framework.messages import Message
from framework.outbox.database import AlreadyHandled, DatabaseUnavailable
from framework.settlement import (
    Busy,
    Deferred,
    Duplicate,
    Expired,
    Failed,
    Handled,
    Invalid,
    Outcome,
)

Handler = Callable[[Message, Context], Awaitable[Any]]
#: (queue, key) -> did a transaction for this delivery commit (framework.outbox inbox)
InboxCheck = Callable[[str, str], Awaitable[bool]]

_log = structlog.get_logger("framework.handling")


@dataclass(frozen=True, slots=True)
class HandlingPolicy:
    """The worker settings processing needs."""

    queue: str
    message_types: dict[str, type[Message]]
    timeout: float
    lease: float
    retention: float
    clock_skew: float = 1.0
    max_body_bytes: int = 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


async def process(
    envelope: Envelope,
    policy: HandlingPolicy,
    store: IdempotencyStore,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
    inbox: InboxCheck | None = None,
) -> Outcome:
    """Run the handler for one delivery, if it should run, and report what happened.

    Order: decode, claim the key (a duplicate is acked even past its deadline), check the
    deadline, run the handler, then mark the key done (success) or release it (failure).
    An unavailable store defers the message (no attempt burned) rather than guessing.
    A delivery whose envelope is unusable (no key, forged deadline, poisoned headers) or
    whose body is over `max_body_bytes` is invalid before anything is claimed or parsed.
    """
    unusable = _unusable(envelope, policy)
    if unusable is not None:
        return unusable
    try:
        message = decode_body(envelope, policy.message_types[envelope.type])
    except InvalidMessage as exc:
        return Invalid(str(exc))

    try:
        claim = await store.claim(policy.queue, envelope.message_id, policy.lease)
    except Exception as exc:
        _log.error("idempotency.claim_failed", error=repr(exc))
        return Deferred(f"idempotency store unavailable: {_describe(exc)}")
    if claim is ClaimResult.DONE:
        return Duplicate()
    if claim is ClaimResult.BUSY:
        return Busy()
    try:
        outcome = await _unless_seen_or_expired(message, envelope, policy, handler,
                                                make_context, inbox)
    except BaseException:
        await asyncio.shield(_release(store, policy.queue, envelope.message_id))
        raise
    if isinstance(outcome, Handled | Duplicate):
        try:
            await store.complete(policy.queue, envelope.message_id, policy.retention)
        except Exception as exc:
            # The effect happened: ack anyway. A later duplicate may run again once the
            # lease expires; that is logged here so it can be traced.
            _log.error("idempotency.complete_failed", error=repr(exc))
    else:
        await _release(store, policy.queue, envelope.message_id)
    return outcome


def _unusable(envelope: Envelope, policy: HandlingPolicy) -> Invalid | None:
    """Why a delivery is invalid before its key is claimed or its body parsed (None: fine)."""
    if envelope.ignored:
        _log.warning("delivery.header_ignored", problems=list(envelope.ignored))
    if envelope.invalid is not None:
        return Invalid(envelope.invalid)
    if len(envelope.body) > policy.max_body_bytes:
        return Invalid(
            f"body is {len(envelope.body)} bytes, over this worker's max_body_bytes="
            f"{policy.max_body_bytes}: send large payloads by reference (claim check: store "
            "the blob elsewhere, send its location)"
        )
    if envelope.type not in policy.message_types:
        known = ", ".join(sorted(policy.message_types))
        return Invalid(f"unknown message type {envelope.type!r} (this queue handles: {known})")
    return None
async def _unless_seen_or_expired(
    message: Message,
    envelope: Envelope,
    policy: HandlingPolicy,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
    inbox: InboxCheck | None,
) -> Outcome:
    """Run the handler unless the inbox has the key (a duplicate, acked even past its
    deadline) or the deadline has passed."""
    if inbox is not None and (seen := await _check_inbox(inbox, policy.queue, envelope)):
        return seen
    if is_expired(envelope.deadline_ms, now_ms(), policy.clock_skew):
        return Expired("deadline passed before handling")
    return await _run_handler(message, envelope, policy, handler, make_context)


async def _check_inbox(inbox: InboxCheck, queue: str, envelope: Envelope) -> Outcome | None:
    """Duplicate if this delivery's transaction committed before; Deferred if the database
    cannot say; None: run the handler."""
    try:
        seen = await inbox(queue, envelope.message_id)
    except Exception as exc:  # logged once, with the settlement (delivery.retry_scheduled)
        return Deferred(f"database unavailable: {_describe(exc)}")
    return Duplicate() if seen else None


async def _release(store: IdempotencyStore, queue: str, key: str) -> None:
    """Release a claim; if the store is down the lease simply expires later."""
    try:
        await store.release(queue, key)
    except Exception as exc:
        _log.warning("idempotency.release_failed", error=repr(exc))


async def _run_handler(
    message: Message,
    envelope: Envelope,
    policy: HandlingPolicy,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
) -> Outcome:
    budget = handler_budget(policy.timeout, envelope.deadline_ms, now_ms(), policy.clock_skew)
    bounded_by_deadline = budget < policy.timeout
    try:
        async with asyncio.timeout(budget) as scope:
            result = await handler(message, make_context(envelope))
    except TimeoutError as exc:
        if not scope.expired():
            return Failed(_describe(exc))
        if bounded_by_deadline:
            return Expired(f"deadline passed while handling (after {budget:.3g}s)")
        return Failed(f"HandlerTimeout: handler ran past timeout={policy.timeout:g}s")
    except CircuitOpenError as exc:
        return Deferred(_describe(exc), not_before=exc.retry_in)
    except AlreadyHandled:  # a concurrent delivery of this key committed first
        return Duplicate()
    except DatabaseUnavailable as exc:
        return Deferred(_describe(exc))
    except (PermanentError, ValidationError) as exc:
        return Failed(_describe(exc), permanent=True)
    except Exception as exc:
        return Failed(_describe(exc))
    return Handled(result)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
