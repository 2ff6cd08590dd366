"""A depth-bounded decoder for AMQP field tables and arrays, installed into pamqp.

pamqp decodes a header table recursively, inside aiormq's frame reader: a delivery whose
headers nest ~500 tables deep raises `RecursionError` there, which kills the whole
connection (every prefetched delivery on it is redelivered, the poisoned one again first,
until the broker's delivery limit dead-letters innocent neighbours with it).

`install()` (called by `connection.open_connection`, so every connection the framework
opens is covered; idempotent) replaces pamqp's table and array decoders with these, which
decode exactly the same values up to `MAX_DEPTH` levels and, below that, skip a nested
table or array by its length prefix and put `DROPPED` in its place. The outermost table of
such a frame is a `TruncatedTable` that says how many values were dropped, so the worker
can dead-letter that one delivery as `invalid` (`truncated_headers`); the connection and
every other delivery are unharmed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from pamqp import common, decode

MAX_DEPTH = 64
DROPPED = f"(dropped by framework: nested deeper than {MAX_DEPTH} levels)"

_INT = common.Struct.integer
_Decoder = Callable[[bytes], tuple[int, Any]]
_SCALARS: dict[bytes, _Decoder] = {
    k: v for k, v in decode.TABLE_MAPPING.items() if k not in (b"F", b"A")
}


class TruncatedTable(dict[str, Any]):
    """A decoded field table in which `dropped` too deeply nested values became `DROPPED`."""

    dropped: int = 0


def truncated_headers(headers: Mapping[str, Any]) -> str | None:
    """Why a delivery's headers cannot be trusted (None if they are whole)."""
    if isinstance(headers, TruncatedTable) and headers.dropped:
        return (
            f"header table nested deeper than {MAX_DEPTH} levels ({headers.dropped} "
            "value(s) dropped): flatten the headers; nothing can handle them"
        )
    return None


def _length(value: bytes, offset: int) -> int:
    end = offset + 4 + int(_INT.unpack_from(value, offset)[0])
    if end > len(value):
        raise ValueError("Field table or array length exceeds available data")
    return end


def _value(value: bytes, offset: int, depth: int, dropped: list[int]) -> tuple[int, Any]:
    """Decode the typed value at `offset`: (bytes consumed, value)."""
    kind = value[offset : offset + 1]
    if kind in (b"F", b"A"):
        if depth >= MAX_DEPTH:
            dropped[0] += 1
            return _length(value, offset + 1) - offset, DROPPED
        nested = _table if kind == b"F" else _array
        end, result = nested(value, offset + 1, depth + 1, dropped)
        return end - offset, result
    decoder = _SCALARS.get(kind)
    if decoder is None:
        raise ValueError(f"Unknown type: {kind!r}")
    consumed, result = decoder(value[offset + 1 :])
    return consumed + 1, result


def _table(value: bytes, start: int, depth: int, dropped: list[int]) -> tuple[int, Any]:
    """Decode the table at `start`: (offset just past it, dict)."""
    end = _length(value, start)
    offset = start + 4
    data: dict[str, Any] = {}
    while offset < end:
        key_length = value[offset]
        offset += 1
        if offset + key_length > end:
            raise ValueError("Field table key length exceeds data")
        key = value[offset : offset + key_length].decode("utf-8")
        offset += key_length
        consumed, data[key] = _value(value, offset, depth, dropped)
        offset += consumed
    return end, data


def _array(value: bytes, start: int, depth: int, dropped: list[int]) -> tuple[int, Any]:
    end = _length(value, start)
    offset = start + 4
    data: list[Any] = []
    while offset < end:
        consumed, result = _value(value, offset, depth, dropped)
        offset += consumed
        data.append(result)
    return offset, data


def field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """pamqp's `decode.field_table`, bounded to `MAX_DEPTH` levels of nesting."""
    dropped = [0]
    try:
        end, data = _table(value, 0, 1, dropped)
    except (struct.error, TypeError, IndexError) as exc:
        raise ValueError("Could not unpack data") from exc
    if dropped[0]:
        data = TruncatedTable(data)
        data.dropped = dropped[0]
    return end, data


def field_array(value: bytes) -> tuple[int, list[Any]]:
    """pamqp's `decode.field_array`, bounded to `MAX_DEPTH` levels of nesting."""
    try:
        end, data = _array(value, 0, 1, [0])
    except (struct.error, TypeError, IndexError) as exc:
        raise ValueError("Could not unpack data") from exc
    return end, data


def install() -> None:
    """Make pamqp decode every table and array with the bounded decoders (idempotent)."""
    decode.METHODS["table"] = field_table
    decode.METHODS["array"] = field_array
    decode.TABLE_MAPPING[b"F"] = field_table
    decode.TABLE_MAPPING[b"A"] = field_array
