"""Processing one delivery up to its outcome, without a broker (pure apart from the store)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from framework import Command, Context, PermanentError
from framework.consume.decisions import (
    Busy,
    Deferred,
    Duplicate,
    Expired,
    Failed,
    Handled,
    Invalid,
)
from framework.consume.handling import HandlingPolicy, now_ms, process
from framework.idempotency import ClaimResult, MemoryStore
from framework.resilience.breaker import CircuitOpenError
from framework.wire.envelope import Envelope, encode_body


class Pay(Command):
    type_name = "tests.handling.Pay"
    cents: int


POLICY = HandlingPolicy(
    queue="q", message_types={Pay.type_name: Pay}, timeout=0.5, lease=5, retention=60, clock_skew=0
)


def envelope(
    body: bytes | None = None,
    *,
    deadline_ms: int | None = None,
    key: str = "k1",
    type_name: str = Pay.type_name,
) -> Envelope:
    return Envelope(
        message_id=key,
        type=type_name,
        body=body if body is not None else encode_body(Pay(cents=1)),
        correlation_id="c",
        deadline_ms=deadline_ms,
    )


def no_context(env: Envelope) -> Context:
    return None  # type: ignore[return-value]


async def ok(msg: Any, ctx: Context) -> str:
    return "result"


async def test_success_marks_done_and_returns_result() -> None:
    """A handled message is Handled with the result; a second delivery is a Duplicate."""
    store = MemoryStore()
    assert await process(envelope(), POLICY, store, ok, no_context) == Handled("result")
    assert await process(envelope(), POLICY, store, ok, no_context) == Duplicate()


async def test_failure_releases_the_key() -> None:
    """A failed handler releases its claim so the retry can run."""
    store = MemoryStore()

    async def boom(msg: Any, ctx: Context) -> None:
        raise ValueError("nope")

    assert await process(envelope(), POLICY, store, boom, no_context) == Failed("ValueError: nope")
    assert await store.claim("q", "k1", 5) is ClaimResult.CLAIMED


async def test_permanent_and_circuit_open() -> None:
    """PermanentError is permanent; an open circuit defers without burning an attempt."""

    async def refuse(msg: Any, ctx: Context) -> None:
        raise PermanentError("declined")

    async def open_circuit(msg: Any, ctx: Context) -> None:
        raise CircuitOpenError("gw", 3.0)

    result = await process(envelope(), POLICY, MemoryStore(), refuse, no_context)
    assert result == Failed("PermanentError: declined", permanent=True)
    deferred = await process(envelope(), POLICY, MemoryStore(), open_circuit, no_context)
    assert isinstance(deferred, Deferred) and deferred.not_before == 3.0


async def test_timeout_is_a_transient_failure() -> None:
    """A handler past its timeout is cancelled and reported as a HandlerTimeout failure."""

    async def slow(msg: Any, ctx: Context) -> None:
        await asyncio.sleep(5)

    result = await process(envelope(), POLICY, MemoryStore(), slow, no_context)
    assert isinstance(result, Failed) and result.error.startswith("HandlerTimeout")


async def test_invalid_bodies() -> None:
    """Bad JSON, bad schema and unknown types are Invalid without touching the store."""
    store = MemoryStore()
    assert isinstance(await process(envelope(b"{x"), POLICY, store, ok, no_context), Invalid)
    assert isinstance(await process(envelope(b"{}"), POLICY, store, ok, no_context), Invalid)
    unknown = await process(envelope(type_name="Other"), POLICY, store, ok, no_context)
    assert isinstance(unknown, Invalid)
    assert len(store) == 0


async def test_expired_before_handling() -> None:
    """Past its deadline, the handler does not run."""
    ran: list[int] = []

    async def record(msg: Any, ctx: Context) -> None:
        ran.append(1)

    result = await process(
        envelope(deadline_ms=now_ms() - 10_000), POLICY, MemoryStore(), record, no_context
    )
    assert isinstance(result, Expired) and not ran


async def test_duplicate_past_deadline_is_still_a_duplicate() -> None:
    """An already-handled key arriving late is acked as a duplicate, not dead-lettered."""
    store = MemoryStore()
    await process(envelope(), POLICY, store, ok, no_context)
    late = envelope(deadline_ms=now_ms() - 10_000)
    assert await process(late, POLICY, store, ok, no_context) == Duplicate()


async def test_key_held_elsewhere_is_busy() -> None:
    """A key claimed by another worker is Busy."""
    store = MemoryStore()
    await store.claim("q", "k1", 60)
    assert await process(envelope(), POLICY, store, ok, no_context) == Busy()


class BrokenStore(MemoryStore):
    def __init__(self, broken: set[str]) -> None:
        super().__init__()
        self.broken = broken

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        if "claim" in self.broken:
            raise ConnectionError("redis down")
        return await super().claim(scope, key, lease, token)

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        if "complete" in self.broken:
            raise ConnectionError("redis down")
        return await super().complete(scope, key, retention, token)

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        if "release" in self.broken:
            raise ConnectionError("redis down")
        await super().release(scope, key, token)


async def test_store_down_at_claim_defers() -> None:
    """If the store cannot be asked, the message is deferred (not run, not lost)."""
    result = await process(envelope(), POLICY, BrokenStore({"claim"}), ok, no_context)
    assert isinstance(result, Deferred) and "store unavailable" in result.error


async def test_store_down_at_complete_still_acks_the_effect() -> None:
    """The handler's effect happened: the outcome stays Handled even if marking fails."""
    assert await process(envelope(), POLICY, BrokenStore({"complete"}), ok, no_context) == Handled(
        "result"
    )


@pytest.mark.parametrize("broken", [{"release"}])
async def test_store_down_at_release_keeps_the_failure(broken: set[str]) -> None:
    """A failing release does not hide the handler's failure."""

    async def boom(msg: Any, ctx: Context) -> None:
        raise ValueError("x")

    result = await process(envelope(), POLICY, BrokenStore(broken), boom, no_context)
    assert result == Failed("ValueError: x")


async def test_thread_outliving_the_timeout_keeps_the_key_and_marks_it_done() -> None:
    """The timeout cancels the coroutine, not its thread: processing waits for the thread,
    then marks the key done (its effect stands) and dead-letters as permanent."""
    from framework.idempotency.leases import install_tracking_executor

    install_tracking_executor(asyncio.get_running_loop())
    store = MemoryStore()
    ran: list[int] = []

    def effect() -> None:
        import time

        time.sleep(0.8)  # past POLICY.timeout (0.5 s)
        ran.append(1)

    async def in_thread(msg: Any, ctx: Context) -> None:
        await asyncio.to_thread(effect)

    result = await process(envelope(), POLICY, store, in_thread, no_context)
    assert ran == [1]
    assert isinstance(result, Failed) and result.permanent
    assert "HandlerTimeout" in result.error and "thread finished" in result.error
    assert await store.claim("q", "k1", 5) is ClaimResult.DONE


async def test_thread_failing_after_the_timeout_releases_the_key() -> None:
    """If the outliving thread raised, its effect did not happen: retried as usual."""
    from framework.idempotency.leases import install_tracking_executor

    install_tracking_executor(asyncio.get_running_loop())
    store = MemoryStore()

    def effect() -> None:
        import time

        time.sleep(0.8)
        raise OSError("disk full")

    async def in_thread(msg: Any, ctx: Context) -> None:
        await asyncio.to_thread(effect)

    result = await process(envelope(), POLICY, store, in_thread, no_context)
    assert isinstance(result, Failed) and not result.permanent
    assert await store.claim("q", "k1", 5) is ClaimResult.CLAIMED


class HangingStore(MemoryStore):
    """A store whose claims never answer (a stalled server)."""

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_store_that_does_not_answer_defers_within_the_bound() -> None:
    """A claim past store_timeout defers the message and marks the store unhealthy."""
    from dataclasses import replace

    from framework.idempotency.health import StoreHealth

    health = StoreHealth()
    policy = replace(POLICY, store_timeout=0.1)
    result = await asyncio.wait_for(
        process(envelope(), policy, HangingStore(), ok, no_context, health=health), 2
    )
    assert isinstance(result, Deferred) and "did not answer within 0.1s" in result.error
    assert not health.healthy and health.failures == 1
    await process(envelope(key="k2"), POLICY, MemoryStore(), ok, no_context, health=health)
    assert health.healthy


async def test_deferral_carries_the_incoming_count() -> None:
    """A deferred message's count of deferrals so far comes from its fw-deferrals header."""
    from dataclasses import replace

    from framework.wire import names

    deferred = replace(envelope(), headers={names.DEFERRALS: 3})
    result = await process(deferred, POLICY, BrokenStore({"claim"}), ok, no_context)
    assert isinstance(result, Deferred) and result.deferrals == 3


async def test_fenced_completion_is_counted() -> None:
    """A completion refused because another holder took the key over is counted, and the
    other holder's state is kept."""
    from framework.idempotency.health import StoreHealth

    store = MemoryStore()
    health = StoreHealth()

    async def taken_over(msg: Any, ctx: Context) -> None:
        await store.release("q", "k1")  # our lease gone ...
        await store.claim("q", "k1", 5, "another-worker")  # ... and claimed by another

    result = await process(envelope(), POLICY, store, taken_over, no_context, health=health)
    assert result == Handled(None)
    assert health.fenced == 1
    assert await store.claim("q", "k1", 5) is ClaimResult.BUSY  # still the other's lease


async def test_unusable_envelope_is_invalid_without_claiming() -> None:
    """An envelope marked invalid (e.g. keyless) is Invalid and its key is never claimed."""
    store = MemoryStore()
    env = replace(envelope(), invalid="message has no message_id")
    assert await process(env, POLICY, store, ok, no_context) == Invalid("message has no message_id")
    assert await store.claim("q", "k1", 5) is ClaimResult.CLAIMED


async def test_oversized_body_is_invalid_without_parsing() -> None:
    """A body over max_body_bytes is Invalid (saying how big, what the limit is) unparsed."""
    store = MemoryStore()
    policy = replace(POLICY, max_body_bytes=100)
    outcome = await process(envelope(b"{" * 101), policy, store, ok, no_context)
    assert isinstance(outcome, Invalid)
    assert "101 bytes" in outcome.error and "max_body_bytes=100" in outcome.error
    assert await store.claim("q", "k1", 5) is ClaimResult.CLAIMED


async def test_deeply_nested_body_is_invalid_at_once() -> None:
    """A 100k-level nested JSON body is Invalid, not a transient failure."""
    body = b'{"cents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    outcome = await process(
        envelope(body), replace(POLICY, max_body_bytes=10**6), MemoryStore(), ok, no_context
    )
    assert isinstance(outcome, Invalid) and "nested too deeply" in outcome.error


async def test_timeout_failure_text_comes_from_handler_timeout() -> None:
    """The error of a timed-out handler is a HandlerTimeout's own type and text."""
    from framework.errors import HandlerTimeout

    async def slow(msg: Any, ctx: Context) -> None:
        await asyncio.sleep(5)

    result = await process(envelope(), POLICY, MemoryStore(), slow, no_context)
    expected = HandlerTimeout(timeout=POLICY.timeout)
    assert isinstance(result, Failed) and not result.permanent
    assert result.error == f"HandlerTimeout: {expected}"
    assert str(expected) == f"handler ran past timeout={POLICY.timeout:g}s"
