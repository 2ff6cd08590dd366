"""Bounds on the headers the framework writes, so a copy always encodes and always fits.

Every text the framework puts in a header (`fw-error`, reasons) goes through `bound_text`;
the sender's headers copied into a retry or DLQ copy go through `copyable`: values pamqp
cannot encode are converted, and if together they would take more than
`USER_HEADERS_BUDGET` bytes the largest are left out (named in `fw-headers-dropped`).
A retry or DLQ copy therefore never fails to encode and never makes a frame larger than
the incoming one by more than the framework's own few bounded headers.
"""

from __future__ import annotations

import datetime
import decimal
import time
from collections.abc import Mapping
from typing import Any

from pamqp import encode

from framework.wire.guard import DROPPED, MAX_DEPTH

MAX_HEADER_TEXT = 1000  # characters of any text the framework writes into a header
USER_HEADERS_BUDGET = 64 * 1024  # encoded bytes of the sender's headers kept in a copy
HEADERS_DROPPED = "fw-headers-dropped"

_INT64 = (-(2**63), 2**63 - 1)


def bound_text(text: str, limit: int = MAX_HEADER_TEXT) -> str:
    """`text`, cut to `limit` characters with a note of how long it was."""
    if len(text) <= limit:
        return text
    note = f"... [truncated: {len(text)} characters]"
    return text[: max(limit - len(note), 0)] + note


def encodable(value: Any, depth: int = 1) -> Any:
    """`value` as something pamqp can encode: the same value whenever it can."""
    if (
        isinstance(
            value,
            bool | float | str | decimal.Decimal | bytearray | datetime.datetime | time.struct_time,
        )
        or value is None
    ):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, bytes):  # pamqp decodes a non-UTF-8 long string to bytes
        return bytearray(value)
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return DROPPED
    if isinstance(value, Mapping):
        return {str(k): encodable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v, depth + 1) for v in value]
    return bound_text(repr(value))


def encoded_size(value: Any) -> int:
    """Bytes `value` takes in a header table (value only, plus its type octet)."""
    return len(encode.encode_table_value(value))


def copyable(headers: Mapping[str, Any], budget: int = USER_HEADERS_BUDGET) -> dict[str, Any]:
    """The sender's headers as kept in a retry or DLQ copy: encodable, within `budget`."""
    if not headers:
        return {}
    kept = {key: encodable(value) for key, value in headers.items()}
    sizes = {key: len(key) + 1 + encoded_size(value) for key, value in kept.items()}
    total = sum(sizes.values())
    if total <= budget:
        return kept
    dropped = []
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= budget:
            break
        total -= sizes[key]
        dropped.append(key)
        del kept[key]
    kept[HEADERS_DROPPED] = bound_text(
        f"{len(dropped)} header(s) over the {budget}-byte copy budget: {', '.join(dropped)}"
    )
    return kept
