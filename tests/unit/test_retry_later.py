"""RetryLater: the decision (no attempt burned, its own budget, hops for long waits), its
headers and how processing maps the exception, without a broker."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from framework import Command, ConfigurationError, Context, RateLimited, RetryLater, Worker
from framework.consume.decisions import (
    DeadLetter,
    Expired,
    NotYet,
    Postponed,
    Reason,
    Retry,
    decide,
)
from framework.consume.deferrals import retry_laters_of
from framework.consume.handling import HandlingPolicy, now_ms, process
from framework.consume.not_before import MAX_AHEAD, hop_ms, not_before_of, remaining_wait
from framework.consume.settle import retry_copy
from framework.consume.worker_spec import build_spec
from framework.idempotency import MemoryStore
from framework.resilience.backoff import RetryPolicy
from framework.wire import names
from framework.wire.envelope import Envelope, encode_body, from_amqp, wire_headers

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, jitter=0.5, retry_later_limit=2)


def low() -> float:
    return 0.0


def high() -> float:
    return 1.0


# ---- the exception ------------------------------------------------------------------


def test_retry_later_says_how_long_and_why() -> None:
    """Its text carries the wait and the reason (it becomes the copy's fw-error)."""
    exc = RetryLater(after=2.5, reason="429 from the gateway")
    assert (exc.after, exc.reason) == (2.5, "429 from the gateway")
    assert str(exc) == "retry after 2.5s: 429 from the gateway"


@pytest.mark.parametrize("after", [-1, math.inf, math.nan, True, "5", None, 401 * 86400])
def test_retry_later_refuses_a_wait_that_is_not_a_duration(after: Any) -> None:
    """A negative, infinite or non-numeric wait is a mistake, named at the raise."""
    with pytest.raises(ValueError, match="a number >= 0 and at most"):
        RetryLater(after=after)


def test_rate_limited_is_a_retry_later() -> None:
    """A refused rate-limit turn is deferred through the same path."""
    exc = RateLimited("gateway", 0.25, 50)
    assert isinstance(exc, RetryLater) and exc.after == 0.25 and exc.limit == "gateway"


# ---- the decision -------------------------------------------------------------------


def test_retry_later_keeps_the_attempt_and_counts_against_its_budget() -> None:
    """The copy is the same attempt, waits at least `after`, and carries the new count."""
    result = decide(Postponed("RetryLater: x", after=3.0, retry_laters=0), 2, POLICY, low)
    assert result == Retry(3000, 2000, 2, "RetryLater: x", None, retry_later=1)


def test_retry_later_jitters_upward_only() -> None:
    """The jitter lengthens the wait by up to `jitter` of it, never shortens it."""
    lowest = decide(Postponed("e", after=2.0), 1, POLICY, low)
    highest = decide(Postponed("e", after=2.0), 1, POLICY, high)
    assert isinstance(lowest, Retry) and isinstance(highest, Retry)
    assert (lowest.delay_ms, highest.delay_ms) == (2000, 3000)


def test_retry_later_does_not_touch_max_attempts() -> None:
    """At the last attempt a RetryLater is still retried: it burns no attempt."""
    result = decide(Postponed("e", after=1.0), POLICY.max_attempts, POLICY, low)
    assert isinstance(result, Retry) and result.next_attempt == POLICY.max_attempts


def test_past_the_budget_the_message_is_dead_lettered_as_exhausted() -> None:
    """One RetryLater more than `retry_later_limit` dead-letters, saying the budget is spent."""
    result = decide(Postponed("RetryLater: busy", after=1.0, retry_laters=2), 1, POLICY, low)
    assert isinstance(result, DeadLetter) and result.reason is Reason.EXHAUSTED
    assert "retry-later budget spent" in result.error and "retry_later_limit=2" in result.error
    assert result.error.endswith("last: RetryLater: busy")


def test_a_zero_budget_dead_letters_the_first_retry_later() -> None:
    policy = RetryPolicy(retry_later_limit=0)
    assert isinstance(decide(Postponed("e", after=1.0), 1, policy, low), DeadLetter)


def test_a_wait_beyond_the_largest_tier_goes_in_hops() -> None:
    """A wait longer than one delay queue holds: one hop of `retry_max_delay`, the whole
    wait in the copy's not-before."""
    result = decide(Postponed("e", after=100.0), 1, POLICY, low)
    assert isinstance(result, Retry)
    assert (result.delay_ms, result.tier_ms, result.not_before_in_ms) == (8000, 8000, 100_000)


def test_an_early_copy_waits_for_the_rest_counting_nothing() -> None:
    """A copy arriving before its not-before goes on for the rest, same attempt, no count."""
    result = decide(NotYet(remaining=2.5), 2, POLICY, low)
    assert isinstance(result, Retry)
    assert result == Retry(2500, 2000, 2, result.error, None, retry_later=None, waiting=True)
    assert names.NOT_BEFORE in result.error
    kept = decide(NotYet(remaining=2.5, error="RetryLater: retry after 60s: x"), 2, POLICY, low)
    assert isinstance(kept, Retry) and kept.error == "RetryLater: retry after 60s: x"


def test_hops_split_only_what_one_hop_cannot_carry() -> None:
    assert hop_ms(5000, 8000) == (5000, None)
    assert hop_ms(20_000, 8000) == (8000, 20_000)


# ---- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "3", 3.0, True, -1, 2**40])
def test_an_invalid_retry_later_count_reads_as_zero(value: object) -> None:
    headers = {} if value is None else {names.RETRY_LATER: value}
    assert retry_laters_of(headers) == 0


def test_not_before_is_epoch_ms_and_absurd_values_are_ignored() -> None:
    """An int is epoch ms; a time further ahead than MAX_AHEAD is not ours (ignored)."""
    now = 1_800_000_000.0
    assert not_before_of({names.NOT_BEFORE: 1_800_000_005_500}, now) == 1_800_000_005.5
    assert remaining_wait({names.NOT_BEFORE: 1_800_000_005_500}, now) == pytest.approx(5.5)
    assert remaining_wait({names.NOT_BEFORE: 1_799_999_999_000}, now) == 0.0
    far = int((now + MAX_AHEAD + 10) * 1000)
    for value in (far, "soon", True, -5, math.inf):
        assert not_before_of({names.NOT_BEFORE: value}, now) is None


def _envelope(**headers: Any) -> Envelope:
    return Envelope(message_id="k", type="t", body=b"{}", correlation_id="c", headers=headers)


def test_the_retry_copy_carries_the_count_and_the_not_before_in_epoch_ms() -> None:
    """The copy's headers survive the AMQP encoding: count as int, not-before as epoch ms."""
    settlement = Retry(8000, 8000, 1, "e", None, retry_later=3, not_before_in_ms=100_000)
    before = time.time()
    copy = from_amqp(_to_incoming(retry_copy(_envelope(), settlement)))
    assert retry_laters_of(copy.headers) == 3
    stamped = not_before_of(copy.headers, before)
    assert stamped is not None and before + 100 <= stamped <= time.time() + 100.001


def test_a_copy_that_needs_no_hop_drops_a_stale_not_before() -> None:
    """A later retry of a message that once waited in hops carries no stale not-before, and
    keeps its retry-later count."""
    old = _envelope(**{names.NOT_BEFORE: 1, names.RETRY_LATER: 2})
    copy = retry_copy(old, Retry(1000, 1000, 2, "boom"))
    assert names.NOT_BEFORE not in copy.headers
    assert copy.headers[names.RETRY_LATER] == 2


def _to_incoming(copy: Envelope) -> Any:
    """The copy as a consumer would receive it (its headers encoded and decoded by pamqp)."""
    from pamqp import decode, encode

    headers = decode.field_table(encode.field_table(dict(wire_headers(copy))))[1]

    class Received:
        body = copy.body
        message_id = copy.message_id
        correlation_id = copy.correlation_id
        type = copy.type
        reply_to = None
        timestamp = None
        app_id = None
        delivery_tag = 1
        redelivered = False

    Received.headers = headers  # type: ignore[attr-defined]
    return Received()


# ---- processing ---------------------------------------------------------------------


class Pay(Command):
    type_name = "tests.retry_later.Pay"
    cents: int


HANDLING = HandlingPolicy(
    queue="q", message_types={Pay.type_name: Pay}, timeout=1, lease=5, retention=60, clock_skew=0
)


def _delivery(deadline_ms: int | None = None, **headers: Any) -> Envelope:
    return Envelope(
        message_id="k1",
        type=Pay.type_name,
        body=encode_body(Pay(cents=1)),
        correlation_id="c",
        deadline_ms=deadline_ms,
        headers=headers,
    )


def no_context(env: Envelope) -> Context:
    return None  # type: ignore[return-value]


async def asks_later(msg: Any, ctx: Context) -> None:
    raise RetryLater(after=30, reason="not ready")


async def test_a_handlers_retry_later_is_postponed_with_the_count_so_far() -> None:
    """RetryLater becomes Postponed, with the count the delivery arrived with."""
    outcome = await process(
        _delivery(**{names.RETRY_LATER: 4}), HANDLING, MemoryStore(), asks_later, no_context
    )
    assert outcome == Postponed("RetryLater: retry after 30s: not ready", 30.0, 4)


async def test_a_retry_later_past_the_deadline_expires_at_once() -> None:
    """Deadlines win: waiting past the deadline could only end in expired, so it ends now."""
    outcome = await process(
        _delivery(deadline_ms=now_ms() + 5000), HANDLING, MemoryStore(), asks_later, no_context
    )
    assert isinstance(outcome, Expired) and "retry-later" in outcome.error


async def test_an_early_copy_is_sent_on_without_running_the_handler() -> None:
    """Before its not-before the handler does not run and the key is not claimed."""
    ran: list[int] = []

    async def handler(msg: Any, ctx: Context) -> None:
        ran.append(1)

    store = MemoryStore()
    soon = int((time.time() + 60) * 1000)
    outcome = await process(
        _delivery(**{names.NOT_BEFORE: soon}), HANDLING, store, handler, no_context
    )
    assert isinstance(outcome, NotYet) and 59 < outcome.remaining <= 60
    assert ran == []
    later = await process(_delivery(**{names.NOT_BEFORE: 1}), HANDLING, store, handler, no_context)
    assert ran == [1] and not isinstance(later, NotYet)


async def test_an_early_copy_past_its_deadline_is_expired_not_kept_waiting() -> None:
    soon = int((time.time() + 60) * 1000)
    outcome = await process(
        _delivery(deadline_ms=now_ms() - 5000, **{names.NOT_BEFORE: soon}),
        HANDLING,
        MemoryStore(),
        asks_later,
        no_context,
    )
    assert isinstance(outcome, Expired)


@pytest.mark.parametrize("limit", [-1, 2.5, True, "20"])
def test_a_bad_retry_later_limit_is_a_configuration_error(limit: Any) -> None:
    """retry_later_limit must be an int >= 0; the error says what it means."""

    class Bad(Worker):
        queue = "q"
        retry_later_limit = limit

        async def handle(self, msg: Pay, ctx: Context) -> None:
            return None

    with pytest.raises(ConfigurationError, match="retry_later_limit must be an int >= 0"):
        build_spec(Bad)


def test_a_misspelled_retry_later_limit_is_named() -> None:
    """A typo of the new setting is caught like any other."""
    with pytest.raises(ConfigurationError, match="retry_later_limit"):
        type("Typo", (Worker,), {"retry_later_limt": 3})
