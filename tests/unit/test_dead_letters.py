"""One reason per dead-lettered message, from fw-reason or the broker's x-death."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from framework.ops.dead_letter_headers import (
    dead_letter_attempts,
    dead_letter_error,
    dead_letter_key,
    dead_letter_reason,
    dead_lettered_at,
    describe,
    replay_headers,
)
from framework.wire import names

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def death(reason: str, queue: str = "orders", count: int = 1) -> dict[str, object]:
    return {
        "reason": reason,
        "queue": queue,
        "count": count,
        "time": WHEN,
        "exchange": "",
        "routing-keys": [queue],
    }


@pytest.mark.parametrize("reason", ["invalid", "permanent", "exhausted", "expired"])
def test_framework_reason_wins(reason: str) -> None:
    """fw-reason is reported as is, even when an x-death is present too."""
    headers = {names.REASON: reason, names.X_DEATH: [death("delivery_limit")]}
    assert dead_letter_reason(headers) == reason


@pytest.mark.parametrize(
    ("broker", "reported"),
    [
        ("delivery_limit", "delivery-limit"),
        ("expired", "expired"),
        ("rejected", "rejected"),
        ("maxlen", "maxlen"),
    ],
)
def test_broker_reasons_map_to_one_word(broker: str, reported: str) -> None:
    """x-death reasons of broker dead-lettering are reported in the framework's words."""
    assert dead_letter_reason({names.X_DEATH: [death(broker)]}) == reported


def test_retry_tier_expiry_is_not_the_cause() -> None:
    """Retry tiers dead-letter by expiry back to Q; the cause is the death from Q itself."""
    headers = {names.X_DEATH: [death("expired", "orders.retry.1s", 3), death("delivery_limit")]}
    assert dead_letter_reason(headers) == "delivery-limit"
    assert "from orders: delivery_limit" in dead_letter_error(headers)


def test_bytes_header_values_are_read_as_text() -> None:
    """AMQP long strings may arrive as bytes."""
    assert dead_letter_reason({names.REASON: b"permanent"}) == "permanent"
    assert dead_letter_reason({names.X_DEATH: [{"reason": b"rejected", "queue": b"q"}]}) == (
        "rejected"
    )


def test_no_reason_at_all_is_unknown() -> None:
    """A message someone published straight into the DLQ."""
    assert dead_letter_reason({}) == "unknown"
    assert dead_letter_error({}) == ""


def test_attempts_from_fw_attempts_then_fw_attempt_never_delivery_count() -> None:
    """fw-attempts when the framework dead-lettered it, else the attempt it was on; the
    DLQ's own x-delivery-count (raised by each browse) is never reported."""
    assert dead_letter_attempts({names.ATTEMPTS: 5, "x-delivery-count": 9}) == 5
    assert dead_letter_attempts({names.ATTEMPT: 2, "x-delivery-count": 7}) == 2
    assert dead_letter_attempts({"x-delivery-count": 2}) is None
    assert dead_letter_attempts({}) is None


def test_dead_at_from_failed_at_then_x_death_then_timestamp() -> None:
    """Age is measured from when it died, not when it was first sent."""
    sent = datetime(2025, 1, 1, tzinfo=UTC)
    assert dead_lettered_at({names.FAILED_AT: WHEN.isoformat()}, sent) == WHEN
    assert dead_lettered_at({names.X_DEATH: [death("rejected")]}, sent) == WHEN
    assert dead_lettered_at({}, sent) == sent


def test_describe_summarises_for_listing() -> None:
    """`dlq list --json` rows carry key, type, reason, error, attempts and age."""
    headers = {
        names.REASON: "exhausted",
        names.ERROR: "ValueError: boom",
        names.ATTEMPTS: 5,
        names.FAILED_AT: WHEN.isoformat(),
    }
    letter = describe(
        message_id="k1",
        type_="t.Order",
        correlation_id="c",
        headers=headers,
        timestamp=None,
        body=b"{}",
    )
    summary = letter.summary(datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC))
    assert summary["key"] == "k1" and summary["reason"] == "exhausted"
    assert summary["attempts"] == 5 and summary["age_seconds"] == 60.0
    assert summary["error"] == "ValueError: boom"


def test_replay_headers_reset_attempt_and_drop_death_details() -> None:
    """A replayed copy starts at attempt 1 with no deadline and a fresh retry-later budget,
    keeping everything else."""
    headers = {
        names.REASON: "exhausted",
        names.ERROR: "x",
        names.ATTEMPTS: 5,
        names.ORIGINAL_QUEUE: "q",
        names.FAILED_AT: "t",
        names.DEADLINE: 1,
        names.RETRY_LATER: 20,
        names.NOT_BEFORE: 1,
        names.ATTEMPT: 5,
        names.X_DEATH: [death("rejected")],
        "x-first-death-reason": "r",
        names.TRACEPARENT: "00-abc",
        names.CAUSATION_ID: "parent",
        "custom": "kept",
    }
    assert replay_headers(headers) == {
        names.ATTEMPT: 1,
        names.TRACEPARENT: "00-abc",
        names.CAUSATION_ID: "parent",
        "custom": "kept",
    }


def test_keyless_dead_letter_is_known_by_its_content_key() -> None:
    """A DLQ message without message_id is listed under a stable content key (never a
    delivery tag); one with a message_id under that id."""
    from framework.wire.keys import content_key

    letter = describe(
        message_id=None, type_="t", correlation_id=None, headers={}, timestamp=None, body=b"{}"
    )
    assert letter.key == content_key("t", b"{}")
    assert dead_letter_key(None, "t", b"{}") == dead_letter_key(None, "t", b"{}")
    assert dead_letter_key(None, "t", b"{}") != dead_letter_key(None, "t", b"[]")
    assert dead_letter_key("mine", "t", b"{}") == "mine"
