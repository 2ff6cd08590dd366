"""Reading header values as the wire hands them over (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from framework.wire.header_values import header_int, header_text, shown_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("3", 3), (b"-7", -7), (True, None), ("3.0", None), (3.0, None), (None, None)],
)
def test_header_int_reads_ints_and_their_text_only(value: Any, expected: int | None) -> None:
    """Ints and decimal text (str or bytes) are numbers; booleans, floats and junk are not."""
    assert header_int(value) == expected


def test_header_text_decodes_bytes_and_refuses_other_types() -> None:
    """Bytes are decoded (bad bytes replaced), str kept, anything else is not text."""
    assert header_text(b"caf\xc3\xa9") == "café"
    assert header_text(b"\xff") == "\ufffd"
    assert header_text("x") == "x"
    assert header_text(5) is None


def test_shown_text_shows_any_value() -> None:
    """For display every value becomes text, except a missing one."""
    assert shown_text(b"x") == "x"
    assert shown_text(5) == "5"
    assert shown_text(None) is None
