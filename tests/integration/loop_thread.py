"""A worker replica in a thread of its own, with its own event loop and its own Bus.

Used where two replicas must not share a loop: one whose loop is blocked must not block the
other (lease fencing), or each must reach a shared resource on its own (a rate limit shared
through Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from framework import Bus, Worker


class LoopThread:
    """Runs `worker_cls` on `Bus.connect(amqp_url, service=name, idempotency=store)` (the
    default store without `store`) until `stop()`; a failure to start is kept in `error`."""

    def __init__(
        self, amqp_url: str, worker_cls: type[Worker], name: str, store: str | None = None
    ) -> None:
        self._args = (amqp_url, worker_cls, name, store)
        self.worker: Worker | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc
            self.ready.set()

    async def _run(self) -> None:
        amqp_url, worker_cls, name, store = self._args
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Bus.connect(amqp_url, service=name, idempotency=store) as bus:
            worker = worker_cls(bus)
            task = asyncio.create_task(worker.run())
            await worker.wait_ready()
            self.worker = worker
            self.ready.set()
            await self._stop.wait()
            await worker.stop()
            await task

    async def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 30)
