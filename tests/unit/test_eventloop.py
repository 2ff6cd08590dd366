"""Long-running CLI commands use uvloop when installed."""

from __future__ import annotations

import asyncio

from framework.ops import eventloop


def test_runs_on_uvloop_when_installed() -> None:
    """The loop is uvloop's when uvloop imports, asyncio's when told not to use it."""

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(loop_module()).startswith("uvloop")
    assert eventloop.run(loop_module(), use_uvloop=False).startswith("asyncio")
