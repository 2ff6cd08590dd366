"""Dead letters grouped by cause: reason, exception type and an error text with ids masked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from framework.ops.dead_letter_headers import DeadLetteredMessage, describe
from framework.ops.failure_groups import (
    GROUP_ID_LENGTH,
    MAX_NORMALISED,
    FailureGroups,
    cause_of,
    group_of,
    normalise_error,
    split_error,
)
from framework.wire import names

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def dead(key: str, reason: str, error: str, at: datetime | None = WHEN) -> DeadLetteredMessage:
    headers: dict[str, object] = {names.REASON: reason, names.ERROR: error}
    if at is not None:
        headers[names.FAILED_AT] = at.isoformat()
    return describe(
        message_id=key, type_="t", correlation_id=None, headers=headers, timestamp=None, body=b""
    )


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("order 4711 refused", "order <n> refused"),
        ("amount -12.50 over limit 1,000", "amount <n> over limit <n>"),
        ("order 'A-17' unknown", "order <str> unknown"),
        ('customer "Ann Lee" blocked', "customer <str> blocked"),
        ("can't pay order 9", "can't pay order <n>"),
        ("order-17 of ord2", "order-<n> of ord<n>"),
        ("id 3f2b8c1e-9d4a-4e7b-8c2d-1a2b3c4d5e6f gone", "id <uuid> gone"),
        ("id 3f2b8c1e9d4a4e7b8c2d1a2b3c4d5e6f gone", "id <uuid> gone"),
        ("object 507f1f77bcf86cd799439011 missing", "object <hex> missing"),
        ("at address 0xDEADBEEF", "at address <hex>"),
        ("failed at 2026-12-07T17:41:30.123+00:00 again", "failed at <time> again"),
        ("  many \n\t spaces  ", "many spaces"),
        ("deadbeefed facade", "deadbeefed facade"),  # words of hex letters stay words
    ],
)
def test_normalise_masks_what_varies(text: str, normalised: str) -> None:
    """Ids, numbers, quoted values and timestamps are masked; whitespace collapses."""
    assert normalise_error(text) == normalised


def test_normalised_text_is_bounded() -> None:
    """A long error is cut to MAX_NORMALISED characters after masking."""
    assert len(normalise_error("word " * 10_000)) == MAX_NORMALISED


@pytest.mark.parametrize(
    ("error", "split"),
    [
        ("PermanentError: order 7 refused", ("PermanentError", "order 7 refused")),
        ("TimeoutError", ("TimeoutError", "")),
        ("httpx.ConnectError: refused", ("httpx.ConnectError", "refused")),
        (
            "schema invalid for Order: amount: Field required",
            ("", "schema invalid for Order: amount: Field required"),
        ),
        ("deadline passed before handling", ("", "deadline passed before handling")),
        (
            "dead-lettered by the broker from q: rejected",
            ("", "dead-lettered by the broker from q: rejected"),
        ),
    ],
)
def test_split_error_finds_the_exception_type(error: str, split: tuple[str, str]) -> None:
    """The handler's `Type: text` gives the type; framework sentences name none."""
    assert split_error(error) == split


def test_same_failure_with_other_ids_is_one_group() -> None:
    """Two orders refused for the same reason share a group id."""
    first = cause_of("permanent", "PermanentError: order 'o-1' (id 17) refused")
    second = cause_of("permanent", "PermanentError: order 'o-22' (id 9001) refused")
    assert first == second and first.group_id == second.group_id


@pytest.mark.parametrize(
    "other",
    [
        ("exhausted", "PermanentError: order 1 refused"),
        ("permanent", "ValueError: order 1 refused"),
        ("permanent", "PermanentError: order 1 unknown"),
    ],
)
def test_reason_type_or_text_makes_another_group(other: tuple[str, str]) -> None:
    """A different reason, exception type or normalised text is a different group."""
    assert (
        cause_of(*other).group_id
        != cause_of("permanent", "PermanentError: order 1 refused").group_id
    )


def test_group_id_is_short_stable_hex() -> None:
    """The id is GROUP_ID_LENGTH hex digits, the same on every run (pinned here)."""
    group_id = cause_of("permanent", "PermanentError: order 1 refused").group_id
    assert len(group_id) == GROUP_ID_LENGTH and int(group_id, 16) >= 0
    assert group_id == cause_of("permanent", "PermanentError: order 2 refused").group_id
    assert group_id == "4c152c2859"


def test_groups_count_and_keep_first_and_last_seen() -> None:
    """Counts per group, first/last dead-letter time, and the first key met as example."""
    groups = FailureGroups()
    later = WHEN + timedelta(minutes=5)
    earlier = WHEN - timedelta(minutes=5)
    groups.add(dead("k1", "permanent", "PermanentError: order 1 refused", WHEN))
    groups.add(dead("k2", "invalid", "schema invalid for T: a: Field required"))
    groups.add(dead("k3", "permanent", "PermanentError: order 2 refused", later))
    groups.add(dead("k4", "permanent", "PermanentError: order 3 refused", earlier))
    groups.add(dead("k5", "permanent", "PermanentError: order 4 refused", None))
    big, small = groups.rows()
    assert (big.count, big.example_key, big.first_seen, big.last_seen) == (4, "k1", earlier, later)
    assert (small.count, small.example_key, small.cause.reason) == (1, "k2", "invalid")
    assert groups.get(big.cause.group_id) is big and groups.get("0" * GROUP_ID_LENGTH) is None


def test_equal_counts_keep_the_order_first_met() -> None:
    """Groups of the same size are listed in the order their first message was met."""
    groups = FailureGroups()
    for key, error in [("a", "KeyError: x"), ("b", "ValueError: y"), ("c", "OSError: z")]:
        groups.add(dead(key, "exhausted", error))
    assert [g.example_key for g in groups.rows()] == ["a", "b", "c"]


def test_group_of_a_message_matches_its_row() -> None:
    """`group_of` gives a message the id its group is listed under."""
    message = dead("k", "permanent", "PermanentError: order 5 refused")
    groups = FailureGroups()
    groups.add(message)
    (row,) = groups.rows()
    assert group_of(message) == row.cause.group_id
    assert row.summary() == {
        "group": row.cause.group_id,
        "count": 1,
        "reason": "permanent",
        "exception_type": "PermanentError",
        "error": "order <n> refused",
        "first_seen": WHEN.isoformat(),
        "last_seen": WHEN.isoformat(),
        "example_key": "k",
    }
