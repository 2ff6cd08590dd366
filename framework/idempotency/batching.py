"""Send the store calls that arrive together in one round trip.

A worker claims before and completes after every handler, with up to `prefetch` deliveries
in flight; one round trip to Redis or PostgreSQL per call cost more than the rest of the
framework per message. A `Batcher` queues calls and one task of its own runs everything
pending (at most `max_batch`) as one batch, then the calls that arrived meanwhile as the
next: one round trip in flight at a time, batches as large as the load. Each caller gets
its own result or its own error, once the round trip that carried its call has answered.

A caller that stops waiting (its time bound, `claims.within`, ran out) is dropped from the
queue if its call was not sent yet; once sent, its answer is discarded. A batch that fails
as a whole with an error one call's data can cause (`isolate(error)`) is redone one call
at a time, so only that call's caller gets the error; any other failure (connection lost,
timeout) goes to every caller of the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_Call = TypeVar("_Call")
_Result = TypeVar("_Result")

MAX_BATCH = 512  # bounds one round trip's size and how long its first call waits for it


def _never(error: Exception) -> bool:
    return False


class Batcher(Generic[_Call, _Result]):
    """Queues calls for `run`, one batch in flight at a time; `close()` drains it."""

    def __init__(
        self,
        run: Callable[[Sequence[_Call]], Awaitable[Sequence[_Result | Exception]]],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
        isolate: Callable[[Exception], bool] = _never,
    ) -> None:
        self._run = run  # one result per call, in order, or an exception for that call alone
        self._name = name
        self._max_batch = max_batch
        self._isolate = isolate
        self._pending: deque[tuple[_Call, asyncio.Future[_Result]]] = deque()
        self._task: asyncio.Task[None] | None = None  # running while calls are pending
        self._closed = False

    async def call(self, call: _Call) -> _Result:
        """Queue `call` and wait for its result (raises its error)."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._task is None:  # started now, it first runs after the calls of this tick
            self._task = asyncio.get_running_loop().create_task(self._serve(), name=self._name)
        return await future

    async def close(self) -> None:
        """Refuse new calls, let the queued ones run, and wait for the task to end."""
        self._closed = True
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _serve(self) -> None:
        """Run batches until nothing is pending; the task ends then (a new call restarts it)."""
        try:
            while batch := self._take():
                await self._answer(batch)
        finally:
            self._task = None
            for _, future in self._pending:  # only if the task itself was cancelled
                future.cancel()
            self._pending.clear()

    def _take(self) -> list[tuple[_Call, asyncio.Future[_Result]]]:
        batch: list[tuple[_Call, asyncio.Future[_Result]]] = []
        pending = self._pending
        while pending and len(batch) < self._max_batch:
            queued = pending.popleft()
            if not queued[1].done():  # a caller that gave up is not sent
                batch.append(queued)
        return batch

    async def _answer(self, batch: list[tuple[_Call, asyncio.Future[_Result]]]) -> None:
        try:
            outcomes = await self._outcomes([call for call, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:  # the task was cancelled (the loop is shutting down)
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller gave up; the call still ran
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _outcomes(self, calls: list[_Call]) -> Sequence[_Result | Exception]:
        try:
            outcomes = await self._run(calls)
        except Exception as exc:
            if len(calls) == 1 or not self._isolate(exc):
                raise
            return [await self._alone(call) for call in calls]
        if len(outcomes) != len(calls):
            raise RuntimeError(f"{self._name}: {len(outcomes)} results for {len(calls)} calls")
        return outcomes

    async def _alone(self, call: _Call) -> _Result | Exception:
        try:
            (outcome,) = await self._run([call])
        except Exception as exc:  # noqa: BLE001 - this call's own error, handed to its caller
            return exc
        return outcome
