"""The depth-bounded header decoder: same values as pamqp, poisoned depth dropped, not fatal."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from pamqp import decode, encode

from framework.wire import guard as wire_guard
from framework.wire.guard import DROPPED, MAX_DEPTH, TruncatedTable, truncated_headers


def nested_table(levels: int, kind: bytes = b"F") -> bytes:
    """A header table nested `levels` deep, built by hand (pamqp's encoder would recurse)."""
    inner = b""
    for _ in range(levels):
        if kind == b"F":
            inner = b"\x01k" + b"F" + len(inner).to_bytes(4, "big") + inner
        else:
            inner = b"A" + len(inner).to_bytes(4, "big") + inner
    if kind == b"A":
        inner = b"\x01k" + inner
    return len(inner).to_bytes(4, "big") + inner


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, dict | list) and value:
        value = value["k"] if isinstance(value, dict) else value[0]
        depth += 1
    return depth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"a": 1, "s": "text", "t": True, "f": 1.5, "n": None, "l": 2**40, "neg": -5},
        {"x": {"y": [1, "two", {"z": [decimal.Decimal("1.25")]}], "b": bytearray(b"\x00\x01")}},
        {"when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},
    ],
)
def test_decodes_what_pamqp_decodes(headers: dict[str, Any]) -> None:
    """For ordinary tables the bounded decoder gives exactly pamqp's result."""
    raw = encode.field_table(headers)
    assert wire_guard.field_table(raw) == decode.field_table(raw)


@pytest.mark.parametrize("kind", [b"F", b"A"])
def test_a_1500_level_table_is_cut_not_fatal(kind: bytes) -> None:
    """1500 levels (which make pamqp raise RecursionError) decode with the depth cut."""
    raw = nested_table(1500, kind)
    with pytest.raises(RecursionError):
        decode.field_table(raw)
    consumed, table = wire_guard.field_table(raw)
    assert consumed == len(raw)
    assert isinstance(table, TruncatedTable) and table.dropped == 1
    assert depth_of(table) <= MAX_DEPTH
    problem = truncated_headers(table)
    assert problem is not None and f"nested deeper than {MAX_DEPTH} levels" in problem


def test_dropped_value_sits_where_the_deep_table_was() -> None:
    """The cut table is replaced by the DROPPED marker; shallow siblings are kept."""
    deep = nested_table(MAX_DEPTH + 5)[4:]  # its entries, without the outer length
    body = b"\x04keep" + b"I" + (7).to_bytes(4, "big") + deep
    _, table = wire_guard.field_table(len(body).to_bytes(4, "big") + body)
    assert table["keep"] == 7
    value: Any = table
    for _ in range(MAX_DEPTH):
        value = value["k"]
    assert value == DROPPED


def test_shallow_tables_are_not_marked() -> None:
    """A table at the depth limit is whole and not a TruncatedTable."""
    _, table = wire_guard.field_table(nested_table(MAX_DEPTH - 1))
    assert not isinstance(table, TruncatedTable) and truncated_headers(table) is None


def test_install_routes_pamqp_through_the_guard() -> None:
    """After install, pamqp's own entry points (as aiormq's reader uses them) are bounded."""
    wire_guard.install()
    _, table = decode.by_type(nested_table(1500), "table")
    assert isinstance(table, TruncatedTable)


def test_truncated_length_is_a_value_error() -> None:
    """A length prefix past the data is pamqp's ValueError, as before."""
    with pytest.raises(ValueError, match="exceeds"):
        wire_guard.field_table(b"\x00\x00\x00\x10\x01k")
