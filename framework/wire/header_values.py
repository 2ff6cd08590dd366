"""Reading AMQP header values as the wire hands them over (pure).

A header the framework wrote as a number or a text may come back as an int, a str or, for
AMQP long strings, bytes; a sender may put anything there. These read one value or say
it is not one (None); the envelope and the dead-letter reader both use them.
"""

from __future__ import annotations

from typing import Any


def header_int(value: Any) -> int | None:
    """An int header (or its decimal text, as str or bytes); None for anything else,
    booleans included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def header_text(value: Any) -> str | None:
    """A text header (bytes decoded, undecodable bytes replaced); None if it is not text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def shown_text(value: Any) -> str | None:
    """A header value as text for display: text as it is, anything else by `str`."""
    return (
        header_text(value)
        if isinstance(value, bytes | str)
        else (None if value is None else str(value))
    )
