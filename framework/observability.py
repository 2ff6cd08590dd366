"""Wiring a running worker to metrics and probes: `async with serve_worker_probes(worker, port)`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from framework.bus import Bus
from framework.errors import ConfigurationError, FrameworkError
from framework.metrics import Metrics
from framework.probe_server import ALL_INTERFACES, Probes, ProbeServer
from framework.worker import Worker

DEPTH_REFRESH_TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def serve_worker_probes(
    worker: Worker, port: int, *, host: str = ALL_INTERFACES, metrics: Metrics | None = None
) -> AsyncIterator[ProbeServer]:
    """Expose `worker`'s metrics, liveness and readiness on `port` while the block runs.

    Queue depth gauges are refreshed on each scrape (`bus.queue_stats`); if the broker does
    not answer in time the last values stay and the scrape still succeeds.
    """
    bus = worker.bus
    if not isinstance(bus, Bus):
        raise ConfigurationError("metrics and probes need a worker running on a RabbitMQ Bus")
    metrics = metrics or Metrics()
    metrics.watch(worker)
    log = structlog.get_logger("framework.probes")

    async def refresh_depths() -> None:
        try:
            async with asyncio.timeout(DEPTH_REFRESH_TIMEOUT):
                metrics.set_queue_stats(await bus.queue_stats(worker.spec.queue))
        except (TimeoutError, FrameworkError, OSError) as exc:
            log.warning("probes.depth_refresh_failed", queue=worker.spec.queue, error=repr(exc))

    probes = Probes(metrics=metrics.render, healthy=lambda: bus.is_connected,
                    ready=lambda: worker.consuming, before_scrape=refresh_depths,
                    broker=lambda: bus.masked_url)
    async with ProbeServer(probes, port=port, host=host) as server:
        yield server
