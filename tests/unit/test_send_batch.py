"""The fate of every message of a batch, and the error that carries them (no broker)."""

from __future__ import annotations

import pytest

from framework import Overloaded, PublishTimeout, SendManyFailed
from framework.cli.send_many import key_runs
from framework.errors import SendManyOverloaded
from framework.publish.send_batch import raise_for_failures, send_batch
from framework.publish.send_results import SendResult


async def test_window_one_stops_after_the_first_failure() -> None:
    """With stop_on_failure, messages after a refusal are `not-sent`, in order."""

    async def emit(n: int, key: str) -> None:
        if n == 2:
            raise Overloaded("full", message_id=key)

    results = await send_batch(emit, [1, 2, 3], ["a", "b", "c"], window=1)
    assert [(r.key, r.fate) for r in results] == [
        ("a", "confirmed"),
        ("b", "Overloaded"),
        ("c", "not-sent"),
    ]


async def test_keep_going_tries_every_message() -> None:
    """stop_on_failure=False: each message gets its own fate."""

    async def emit(n: int, key: str) -> None:
        if n % 2:
            raise PublishTimeout("no confirm", message_id=key)

    results = await send_batch(emit, [1, 2, 3], ["a", "b", "c"], window=2, stop_on_failure=False)
    assert [r.fate for r in results] == ["PublishTimeout", "confirmed", "PublishTimeout"]


def test_error_matches_the_first_failure_and_lists_what_to_resend() -> None:
    """An Overloaded first failure raises a SendManyFailed that is also an Overloaded."""
    results = [
        SendResult(0, "a"),
        SendResult(1, "b", Overloaded("full")),
        SendResult(2, "c", sent=False),
    ]
    assert raise_for_failures([SendResult(0, "a")]) == ["a"]
    with pytest.raises(SendManyOverloaded) as caught:
        raise_for_failures(results)
    assert isinstance(caught.value, Overloaded) and isinstance(caught.value, SendManyFailed)
    assert [r.key for r in caught.value.unconfirmed] == ["b", "c"]
    assert "2 of 3 messages not confirmed (1 Overloaded, 1 not-sent)" in str(caught.value)


def test_consecutive_keys_are_shown_as_runs() -> None:
    """`framework send --count` keys P-1 .. P-N collapse into runs in its error line."""
    assert key_runs(["p-1", "p-2", "p-3", "p-5", "p-7", "p-8"]) == [
        "p-1 .. p-3",
        "p-5",
        "p-7 .. p-8",
    ]
