"""Rendering a pyinstrument profile for RESULTS.md (flat self time, flat total time, tree)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# where a frame's file lives -> the share it is counted in (first match wins)
_PACKAGES = (
    ("/framework/", "framework"),
    ("/aiormq/", "aiormq"),
    ("/pamqp/", "pamqp"),
    ("/aio_pika/", "aio-pika"),
    ("/pydantic", "pydantic"),
    ("/structlog/", "structlog"),
    ("/bench/", "bench harness"),
    ("/asyncio/", "event loop (asyncio/uvloop)"),
    ("uvloop", "event loop (asyncio/uvloop)"),
)


def _lines(text: str, limit: int) -> str:
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[:limit])


def flat_top(profiler: Any, top: int) -> dict[str, str]:
    """The `top` functions by self time and by total (inclusive) time."""
    return {
        "self": _lines(profiler.output_text(flat=True, flat_time="self", short_mode=True), top),
        "total": _lines(
            profiler.output_text(flat=True, flat_time="total", short_mode=True), top + 15
        ),
    }


def tree_text(profiler: Any, limit: int = 90) -> str:
    """The start of the call tree (pyinstrument hides library frames below 1%)."""
    return _lines(profiler.output_text(short_mode=True), limit)


def share_by_package(profiler: Any) -> dict[str, float]:
    """Self time per package, as fractions of the whole profile (largest first).

    This is how the results say where the remaining cost is: the framework's own code,
    the AMQP client (aiormq, pamqp), the event loop, or the rest (stdlib, other libraries)."""
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is None or root.time <= 0:
        return {}
    totals: dict[str, float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        totals[_package(frame.file_path or "")] += frame.total_self_time
        stack.extend(c for c in frame.children if not c.is_synthetic)
    whole = sum(totals.values())
    return dict(sorted(((k, v / whole) for k, v in totals.items()), key=lambda kv: -kv[1]))


def _package(path: str) -> str:
    for needle, name in _PACKAGES:
        if needle in path:
            return name
    return "other (stdlib, C builtins, other libraries)"
