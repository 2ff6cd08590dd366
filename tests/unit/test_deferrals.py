"""Deferrals (store unavailable, key busy) back off exponentially via `fw-deferrals`."""

from __future__ import annotations

from typing import Any

import pytest

from framework.consume.decisions import Busy, Deferred, Retry, decide
from framework.consume.deferrals import MAX_DEFERRALS, deferrals_of, next_deferrals
from framework.consume.settle import apply_settlement
from framework.resilience.backoff import RetryPolicy
from framework.wire import names
from framework.wire.envelope import Envelope

POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=300.0, jitter=0.0)


def low(rand_unused: object = None) -> float:
    return 0.0


@pytest.mark.parametrize("value", [None, "3", 3.0, True, -1, MAX_DEFERRALS + 1, 2**70, b"2"])
def test_invalid_header_reads_as_zero(value: object) -> None:
    """Missing, non-int, negative or out-of-range counts are ignored (0), never trusted."""
    headers = {} if value is None else {names.DEFERRALS: value}
    assert deferrals_of(headers) == 0


def test_valid_header_is_read() -> None:
    assert deferrals_of({names.DEFERRALS: 7}) == 7


def test_count_written_is_bounded() -> None:
    """The next count grows by one and never past MAX_DEFERRALS."""
    assert next_deferrals(0) == 1
    assert next_deferrals(MAX_DEFERRALS) == MAX_DEFERRALS


def test_deferral_delay_doubles_with_each_deferral() -> None:
    """An unavailable store: 1 s, 2 s, 4 s, 8 s ... capped, attempt unchanged."""
    delays = []
    for n in range(10):
        settlement = decide(Deferred("store down", deferrals=n), 2, POLICY, low)
        assert isinstance(settlement, Retry)
        assert settlement.next_attempt == 2  # no attempt burned
        assert settlement.deferrals == n + 1
        delays.append(settlement.delay_ms)
    assert delays == [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000]


def test_busy_key_backs_off_too() -> None:
    """A key held by another worker (e.g. a long thread) is re-checked less and less often."""
    first = decide(Busy(0), 1, POLICY, low)
    fourth = decide(Busy(3), 1, POLICY, low)
    assert isinstance(first, Retry) and isinstance(fourth, Retry)
    assert (first.delay_ms, fourth.delay_ms) == (1000, 8000)


def test_circuit_not_before_still_wins() -> None:
    """A breaker's retry_in longer than the backoff is respected."""
    settlement = decide(Deferred("open", not_before=30.0, deferrals=0), 1, POLICY, low)
    assert isinstance(settlement, Retry) and settlement.delay_ms == 30_000


def test_failed_attempt_does_not_set_a_deferral_count() -> None:
    """Only deferrals write fw-deferrals."""
    from framework.consume.decisions import Failed

    settlement = decide(Failed("x"), 1, POLICY, low)
    assert isinstance(settlement, Retry) and settlement.deferrals is None


class Capture:
    """A publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.headers: list[dict[str, object]] = []

    async def publish(
        self,
        message: Any,
        exchange: str,
        routing_key: str,
        *,
        expiration_ms: int | None = None,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        self.headers.append(dict(message.headers))


class NoAck:
    """An acker that acks nothing (the delivery is not what this test is about)."""

    def delivered(self, incoming: Any) -> None:
        return None

    async def ack(self, incoming: Any) -> None:
        return None

    def abandoned(self, incoming: Any) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("deferrals", "written"), [(4, 4), (None, None)])
async def test_retry_copy_carries_the_count_of_a_deferral_only(
    deferrals: int | None, written: int | None
) -> None:
    """A deferral's copy carries its new count; a failed attempt's copy drops the header
    (the count is of deferrals in a row)."""
    publisher = Capture()
    envelope = Envelope(
        message_id="k", type="t", body=b"{}", correlation_id="c", headers={names.DEFERRALS: 3}
    )
    retry = Retry(delay_ms=1000, tier_ms=1000, next_attempt=1, error="x", deferrals=deferrals)
    await apply_settlement(retry, None, envelope, "q", publisher, NoAck())  # type: ignore[arg-type]
    (headers,) = publisher.headers
    assert headers.get(names.DEFERRALS) == written
