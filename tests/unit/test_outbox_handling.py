"""How processing treats the inbox: a committed key is a duplicate, a database that cannot
answer defers the delivery without burning an attempt (pure apart from the memory store)."""

from __future__ import annotations

from typing import Any

from framework import Command, Context
from framework.consume.decisions import Deferred, Duplicate, Handled
from framework.consume.handling import HandlingPolicy, process
from framework.idempotency import ClaimResult, MemoryStore
from framework.outbox import AlreadyHandled, DatabaseUnavailable
from framework.wire.envelope import Envelope, encode_body


class Pay(Command):
    type_name = "tests.outbox_handling.Pay"
    cents: int


POLICY = HandlingPolicy(
    queue="q", message_types={Pay.type_name: Pay}, timeout=0.5, lease=5, retention=60, clock_skew=0
)
ENVELOPE = Envelope(
    message_id="k1", type=Pay.type_name, body=encode_body(Pay(cents=1)), correlation_id="c"
)
RAN: list[str] = []


def no_context(env: Envelope) -> Context:
    return None  # type: ignore[return-value]


async def handler(msg: Any, ctx: Context) -> str:
    RAN.append("ran")
    return "done"


async def seen(queue: str, key: str) -> bool:
    return True


async def unseen(queue: str, key: str) -> bool:
    return False


async def down(queue: str, key: str) -> bool:
    raise DatabaseUnavailable("PostgreSQL postgresql://db/x unavailable: ConnectionRefused")


async def test_a_key_in_the_inbox_is_a_duplicate_without_running_the_handler() -> None:
    """The inbox says the transaction committed: Duplicate, key marked done, handler idle."""
    RAN.clear()
    store = MemoryStore()
    assert await process(ENVELOPE, POLICY, store, handler, no_context, seen) == Duplicate()
    assert RAN == [] and await store.claim("q", "k1", 5) is ClaimResult.DONE


async def test_a_key_not_in_the_inbox_runs_the_handler() -> None:
    """No inbox row: the handler runs as without a database."""
    RAN.clear()
    outcome = await process(ENVELOPE, POLICY, MemoryStore(), handler, no_context, unseen)
    assert outcome == Handled("done") and RAN == ["ran"]


async def test_an_unreachable_inbox_defers_and_releases_the_key() -> None:
    """The database cannot say: Deferred (no attempt burned), the claim released."""
    store = MemoryStore()
    outcome = await process(ENVELOPE, POLICY, store, handler, no_context, down)
    assert isinstance(outcome, Deferred) and "database unavailable" in outcome.error
    assert await store.claim("q", "k1", 5) is ClaimResult.CLAIMED


async def test_a_database_failing_inside_the_handler_defers() -> None:
    """The transaction could not begin or commit: Deferred, not a failed attempt."""

    async def transaction_fails(msg: Any, ctx: Context) -> None:
        raise DatabaseUnavailable("SQLite database 'x.db': database is locked")

    outcome = await process(ENVELOPE, POLICY, MemoryStore(), transaction_fails, no_context)
    assert isinstance(outcome, Deferred) and "database is locked" in outcome.error


async def test_a_concurrent_commit_of_the_same_key_is_a_duplicate() -> None:
    """The inbox insert met a committed row (a racing delivery won): Duplicate."""

    async def raced(msg: Any, ctx: Context) -> None:
        raise AlreadyHandled("k1 on q was handled before")

    assert await process(ENVELOPE, POLICY, MemoryStore(), raced, no_context) == Duplicate()
