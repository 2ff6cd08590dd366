"""The owned background task that asks a replica's owner to re-publish a snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

import structlog

from framework.errors import PublishFailed
from framework.messages import Command


class Sender(Protocol):
    """What the refresher needs of a Bus."""

    async def send(self, command: Command) -> str: ...


def refresh_due(staleness: float, max_age: float) -> bool:
    """Ask for a snapshot when the data is at least `max_age` seconds old (or never came)."""
    return staleness >= max_age


class Refresher:
    """`async with` owns the task: started on enter, cancelled and awaited on exit."""

    def __init__(
        self,
        name: str,
        staleness: Callable[[], float],
        bus: Sender,
        request: Callable[[], Command],
        every: float,
        max_age: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if every <= 0 or max_age < 0:
            raise ValueError("every must be positive and max_age not negative")
        self._name = name
        self._staleness = staleness
        self._bus = bus
        self._request = request
        self._every = every
        self._max_age = max_age
        self._sleep = sleep  # the pause between checks (tests pass one they step through)
        self._task: asyncio.Task[None] | None = None
        self.requests_sent = 0
        self._log = structlog.get_logger("framework.replica").bind(replica=name)

    async def __aenter__(self) -> Refresher:
        self._task = asyncio.create_task(self._run(), name=f"replica-refresh:{self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            staleness = self._staleness()
            if refresh_due(staleness, self._max_age):
                await self._ask(staleness)
            await self._sleep(self._every)

    async def _ask(self, staleness: float) -> None:
        command = self._request()
        try:
            await self._bus.send(command)
        except PublishFailed as exc:  # owner down or not deployed yet: ask again next period
            self._log.warning("replica.refresh_failed", error=repr(exc), staleness=staleness)
            return
        self.requests_sent += 1
        self._log.info("replica.refresh_requested", type=command.type_name, staleness=staleness)
