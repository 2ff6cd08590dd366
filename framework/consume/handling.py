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

from framework.consume.deadlines import handler_budget, is_expired
from framework.consume.decisions import (
    Busy,
    Deferred,
    Duplicate,
    Expired,
    Failed,
    Handled,
    Invalid,
    NotYet,
    Outcome,
    Postponed,
)
from framework.consume.deferrals import deferrals_of, retry_laters_of
from framework.consume.not_before import remaining_wait
from framework.context import Context
from framework.errors import HandlerTimeout, InvalidMessage, PermanentError, RetryLater
from framework.idempotency import ClaimResult, IdempotencyStore
from framework.idempotency.claims import DeliveryClaim
from framework.idempotency.health import StoreHealth
from framework.idempotency.leases import HeldLease, LeaseKeeper, current_lease
from framework.messages import Message
from framework.outbox.database import AlreadyHandled, DatabaseUnavailable
from framework.resilience.breaker import CircuitOpenError
from framework.wire import names
from framework.wire.envelope import Envelope, decode_body

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
    store_timeout: float = 5.0  # seconds any one idempotency store call may take


def now_ms() -> int:
    return int(time.time() * 1000)


async def process(
    envelope: Envelope,
    policy: HandlingPolicy,
    store: IdempotencyStore,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
    inbox: InboxCheck | None = None,
    *,
    leases: LeaseKeeper | None = None,
    health: StoreHealth | None = None,
) -> Outcome:
    """Run the handler for one delivery, if it should run, and report what happened.

    Order: decode, claim the key (a duplicate is acked even past its deadline), check the
    deadline, run the handler, then mark the key done (success) or release it (failure).
    An unavailable store (an error, or no answer within `store_timeout`) defers the message
    (no attempt burned) rather than guessing. The claim carries a token unique to this
    delivery: `leases` renews it while the handler runs and the store refuses a completion
    once another worker took the key over (fencing); `health` notes every store call.
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
    early = _not_yet(envelope, policy)
    if early is not None:
        return early

    claims = DeliveryClaim(
        store,
        policy.queue,
        envelope.message_id,
        policy.lease,
        policy.retention,
        policy.store_timeout,
        leases,
        health,
    )
    try:
        claim = await claims.claim()
    except Exception as exc:  # noqa: BLE001 - any store failure defers the message
        return Deferred(claims.failure("claim", exc), deferrals=deferrals_of(envelope.headers))
    if claim is ClaimResult.DONE:
        return Duplicate()
    if claim is ClaimResult.BUSY:
        return Busy(deferrals_of(envelope.headers))
    held = claims.hold()
    try:
        outcome, keep = await _run_holding(
            held, message, envelope, policy, handler, make_context, inbox
        )
    except BaseException:
        # cancelled (shutdown): threads still running keep the key until the lease expires
        if not held.threads_running():
            await asyncio.shield(claims.release())
        claims.unhold()
        raise
    try:
        # a Duplicate here is the inbox's (the database committed this key before)
        if isinstance(outcome, Handled | Duplicate) or keep:
            await claims.complete()
        else:
            await claims.release()
    finally:
        claims.unhold()
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


def _not_yet(envelope: Envelope, policy: HandlingPolicy) -> NotYet | None:
    """A copy on a long wait that arrived before its `fw-not-before` (framework.consume.not_before)
    goes on waiting, unless its deadline has passed (then it is settled as usual: expired,
    or acked if a duplicate)."""
    wait = remaining_wait(envelope.headers, time.time())
    if wait <= 0 or is_expired(envelope.deadline_ms, now_ms(), policy.clock_skew):
        return None
    error = envelope.headers.get(names.ERROR)
    return NotYet(wait, error if isinstance(error, str) else "")


def _postponed(exc: RetryLater, envelope: Envelope, policy: HandlingPolicy) -> Outcome:
    """A handler's `RetryLater`: postponed, or expired at once when the deadline would pass
    before the wait ends (waiting could only end in `expired`)."""
    deadline_ms = envelope.deadline_ms
    if deadline_ms is not None and is_expired(
        deadline_ms, now_ms() + int(exc.after * 1000), policy.clock_skew
    ):
        return Expired(f"deadline passes before the retry-later wait ends ({_describe(exc)})")
    return Postponed(_describe(exc), exc.after, retry_laters_of(envelope.headers))


async def _check_inbox(inbox: InboxCheck, queue: str, envelope: Envelope) -> Outcome | None:
    """Duplicate if this delivery's transaction committed before; Deferred if the database
    cannot say; None: run the handler."""
    try:
        seen = await inbox(queue, envelope.message_id)
    except Exception as exc:  # noqa: BLE001 - logged once, with the settlement
        return Deferred(f"database unavailable: {_describe(exc)}")
    return Duplicate() if seen else None


async def _run_holding(
    held: HeldLease,
    message: Message,
    envelope: Envelope,
    policy: HandlingPolicy,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
    inbox: InboxCheck | None = None,
) -> tuple[Outcome, bool]:
    """Run the handler with its lease held, unless the inbox has the key (a duplicate,
    acked even past its deadline) or the deadline has passed; wait for threads it started
    that outlive it.

    Returns the outcome and whether to mark the key done although the handler did not
    finish: it timed out, but its threads ended without error later, so their effect stands
    and running the handler again would repeat it.
    """
    reset = current_lease.set(held)  # threads started from here on are tracked (leases.py)
    try:
        if inbox is not None and (seen := await _check_inbox(inbox, policy.queue, envelope)):
            return seen, False
        if is_expired(envelope.deadline_ms, now_ms(), policy.clock_skew):
            return Expired("deadline passed before handling"), False
        outcome, timed_out = await _run_handler(message, envelope, policy, handler, make_context)
    finally:
        current_lease.reset(reset)
    if not held.threads_running():
        return outcome, False
    _log.warning(
        "handler.thread_outlived_handler",
        outcome=type(outcome).__name__,
        hint="a timeout cannot stop a thread: the key stays leased until it ends",
    )
    threads_ok = await held.threads_finished()
    if timed_out and threads_ok:
        _log.error(
            "handler.thread_finished_after_timeout",
            hint="the key is marked done so the effect is not repeated; the rest of "
            "the handler did not run: dead-lettered as permanent",
        )
        error = outcome.error if isinstance(outcome, Failed | Expired) else "timed out"
        return Failed(
            f"{error}; its thread finished afterwards, so its effect stands and "
            "the handler was not run again",
            permanent=True,
            timed_out=isinstance(outcome, Failed) and outcome.timed_out,
        ), True
    return outcome, False


async def _run_handler(
    message: Message,
    envelope: Envelope,
    policy: HandlingPolicy,
    handler: Handler,
    make_context: Callable[[Envelope], Context],
) -> tuple[Outcome, bool]:
    """The handler's outcome, and whether it ran past its time (timeout or deadline)."""
    budget = handler_budget(policy.timeout, envelope.deadline_ms, now_ms(), policy.clock_skew)
    bounded_by_deadline = budget < policy.timeout
    try:
        async with asyncio.timeout(budget) as scope:
            result = await handler(message, make_context(envelope))
    except TimeoutError as exc:
        if not scope.expired():
            return Failed(_describe(exc)), False
        if bounded_by_deadline:
            return Expired(f"deadline passed while handling (after {budget:.3g}s)"), True
        return Failed(_describe(HandlerTimeout(timeout=policy.timeout)), timed_out=True), True
    except CircuitOpenError as exc:
        return Deferred(_describe(exc), not_before=exc.retry_in), False
    except RetryLater as exc:
        return _postponed(exc, envelope, policy), False
    except AlreadyHandled:  # a concurrent delivery of this key committed first
        return Duplicate(), False
    except DatabaseUnavailable as exc:
        return Deferred(_describe(exc)), False
    except (PermanentError, ValidationError) as exc:
        return Failed(_describe(exc), permanent=True), False
    except Exception as exc:  # noqa: BLE001 - any other handler error is transient
        return Failed(_describe(exc)), False
    return Handled(result), False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
