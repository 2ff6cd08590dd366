"""Headers the framework writes are bounded, and copied headers always encode."""

from __future__ import annotations

from pamqp import encode

from framework.wire.header_limits import (
    HEADERS_DROPPED,
    MAX_HEADER_TEXT,
    bound_text,
    copyable,
)


def test_bound_text_keeps_short_text() -> None:
    """Text within the bound is unchanged."""
    assert bound_text("ValueError: nope") == "ValueError: nope"


def test_bound_text_cuts_long_text_and_says_so() -> None:
    """A 200 KB error text is cut to MAX_HEADER_TEXT characters, noting its full length."""
    text = bound_text("ValueError: " + "x" * 200_000)
    assert len(text) == MAX_HEADER_TEXT
    assert text.startswith("ValueError: xxx") and "200012 characters" in text


def test_copyable_converts_what_pamqp_cannot_encode() -> None:
    """Non-UTF-8 strings (bytes), ints beyond int64 and odd objects become encodable."""
    headers = {"raw": b"\xff", "big": 2**64, "obj": object(), "ok": "v", "n": [b"\xfe"]}
    copied = copyable(headers)
    encode.field_table(copied)  # does not raise
    assert copied["ok"] == "v" and copied["big"] == str(2**64)
    assert copied["raw"] == bytearray(b"\xff")


def test_copyable_drops_the_largest_over_budget() -> None:
    """Headers over the budget lose their largest entries, which are named."""
    copied = copyable({"huge": "x" * 5000, "small": "y"}, budget=1000)
    assert "huge" not in copied and copied["small"] == "y"
    assert "huge" in copied[HEADERS_DROPPED]
