"""Rendering a pyinstrument profile for RESULTS.md (flat self time, flat total time, tree)."""

from __future__ import annotations

from typing import Any


def _lines(text: str, limit: int) -> str:
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[:limit])


def flat_top(profiler: Any, top: int) -> dict[str, str]:
    """The `top` functions by self time and by total (inclusive) time."""
    return {
        "self": _lines(profiler.output_text(flat=True, flat_time="self", short_mode=True), top),
        "total": _lines(profiler.output_text(flat=True, flat_time="total", short_mode=True),
                        top + 15),
    }


def tree_text(profiler: Any, limit: int = 90) -> str:
    """The start of the call tree (pyinstrument hides library frames below 1%)."""
    return _lines(profiler.output_text(short_mode=True), limit)
