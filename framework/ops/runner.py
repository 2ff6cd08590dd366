"""Running one worker as a process: connect, consume, map SIGTERM/SIGINT to a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from framework.bus import Bus
from framework.consume.shutdown import CLOSE_MARGIN, within
from framework.contracts.loading import load_object
from framework.errors import ConfigurationError
from framework.ops.gc_tuning import freeze_startup_heap
from framework.ops.observability import serve_worker_probes
from framework.settings import Settings
from framework.worker import Worker


def load_worker_class(path: str) -> type[Worker]:
    """Resolve `module:Class` to a Worker subclass, with a clear error otherwise."""
    obj = load_object(path)
    if not (isinstance(obj, type) and issubclass(obj, Worker) and obj is not Worker):
        raise ConfigurationError(f"{path} is not a Worker subclass")
    return obj


async def run_worker(worker_cls: type[Worker], settings: Settings) -> None:
    """Run `worker_cls` until SIGTERM or SIGINT, then stop it gracefully.

    Signal handlers are installed before connecting, so a SIGTERM during start-up is a
    clean exit too.
    """
    log = structlog.get_logger("framework.runner")
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(signame: str) -> None:
        log.info("runner.signal", signal=signame)
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await _serve(worker_cls, settings, stop_requested)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def _serve(
    worker_cls: type[Worker], settings: Settings, stop_requested: asyncio.Event
) -> None:
    service = worker_cls.service or worker_cls.queue
    bus = Bus.connect(settings=settings, service=service)
    await bus.start()
    worker: Worker | None = None
    try:
        if stop_requested.is_set():
            return
        worker = worker_cls(bus)
        await _run(worker, settings, stop_requested)
    finally:
        # the rest of the shutdown budget: a stalled broker must not hold the exit
        budget = worker.shutdown if worker is not None else None
        bound = budget.closing_remaining() if budget is not None else CLOSE_MARGIN
        await within(
            bus.close(), bound, structlog.get_logger("framework.runner"), "runner.bus_close_failed"
        )


async def _run(worker: Worker, settings: Settings, stop_requested: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_port is not None:
            await stack.enter_async_context(serve_worker_probes(worker, settings.metrics_port))
        stopper = asyncio.create_task(_stop_when(stop_requested, worker))
        freezer = asyncio.create_task(_freeze_when_consuming(worker))
        try:
            await worker.run()
        finally:
            for task in (stopper, freezer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _freeze_when_consuming(worker: Worker) -> None:
    """Once start-up is over, keep its objects out of the garbage collector's walks."""
    with contextlib.suppress(Exception):  # run() failing is reported by run() itself
        await worker.wait_ready()
        frozen = freeze_startup_heap()
        structlog.get_logger("framework.runner").debug("runner.heap_frozen", objects=frozen)


async def _stop_when(stop_requested: asyncio.Event, worker: Worker) -> None:
    await stop_requested.wait()
    await worker.stop()
