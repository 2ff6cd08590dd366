"""Wiring a running worker to metrics and probes: `async with serve_worker_probes(worker, port)`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from framework.errors import ConfigurationError, FrameworkError
from framework.ops.metrics import Metrics
from framework.ops.probe_server import ALL_INTERFACES, Probes, ProbeServer
from framework.wire.rabbitmq import RabbitPort
from framework.worker import Worker

DEPTH_REFRESH_TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def serve_worker_probes(
    worker: Worker, port: int, *, host: str = ALL_INTERFACES, metrics: Metrics | None = None
) -> AsyncIterator[ProbeServer]:
    """Expose `worker`'s metrics, liveness and readiness on `port` while the block runs.

    `/healthz` (liveness) is 200 while the worker's run loop is alive, also while the broker
    is unreachable; `/readyz` is 200 only while the worker is subscribed and both broker
    connections are up.

    Queue depth gauges are refreshed on each scrape (`bus.queue_stats`); if the broker does
    not answer in time the last values stay and the scrape still succeeds.
    """
    bus = worker.bus
    if not isinstance(bus.port, RabbitPort):  # the in-memory bus has no broker to report
        raise ConfigurationError("metrics and probes need a worker running on a RabbitMQ Bus")
    metrics = metrics or Metrics()
    metrics.watch(worker)
    log = structlog.get_logger("framework.probes")

    async def refresh_depths() -> None:
        metrics.refresh_breakers(worker)
        try:
            async with asyncio.timeout(DEPTH_REFRESH_TIMEOUT):
                metrics.set_queue_stats(await bus.queue_stats(worker.spec.queue))
        except (TimeoutError, FrameworkError, OSError) as exc:
            log.warning("probes.depth_refresh_failed", queue=worker.spec.queue, error=repr(exc))

    # liveness: the process is not stuck (this loop answers, the worker's run loop is
    # alive); a broker outage is not a reason to restart. Readiness: it can receive now.
    probes = Probes(
        metrics=metrics.render,
        healthy=lambda: worker.alive,
        ready=lambda: worker.receiving and bus.is_connected,
        before_scrape=refresh_depths,
        store_ready=lambda: worker.store_health.healthy,
        broker=lambda: bus.masked_url,
    )
    async with ProbeServer(probes, port=port, host=host) as server:
        yield server
