"""Running the example services for the demo: in this process, or one process each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from framework.bus import Bus
from framework.cli.demo.examples import examples_root
from framework.resilience.breaker import BreakerState, CircuitBreaker
from framework.worker import Worker
from services.customers.worker import CustomerWorker
from services.notifications.worker import NotificationWorker, ReceiptWorker
from services.orders.worker import OrderWorker
from services.payments.gateway import Gateway, GatewaySettings
from services.payments.worker import PaymentWorker

WORKERS: tuple[type[Worker], ...] = (
    CustomerWorker,
    OrderWorker,
    PaymentWorker,
    NotificationWorker,
    ReceiptWorker,
)


@dataclass
class Fleet:
    """The running services, as far as the demo can see them."""

    workers: list[Worker] = field(default_factory=list)
    breaker: CircuitBreaker | None = None
    breaker_opened: int = 0
    log_dir: Path | None = None

    def stat(self, name: str) -> int | None:
        """A counter summed over in-process workers (None when they run as processes)."""
        if not self.workers:
            return None
        return sum(int(getattr(w.stats, name)) for w in self.workers)

    def breaker_state(self) -> str:
        if self.breaker is None:
            return "n/a (separate process)"
        return self.breaker.state.value

    def _on_breaker(self, _: CircuitBreaker, __: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            self.breaker_opened += 1


@contextlib.asynccontextmanager
async def in_process(bus: Bus, gateway: GatewaySettings) -> AsyncIterator[Fleet]:
    """Every service as a Worker on `bus`, stopped gracefully (drained) on exit."""
    fleet = Fleet()
    for cls in WORKERS:
        if cls is PaymentWorker:
            payments = PaymentWorker(bus, Gateway(gateway))
            payments.breaker.add_listener(fleet._on_breaker)
            fleet.breaker = payments.breaker
            fleet.workers.append(payments)
        else:
            fleet.workers.append(cls(bus))
    tasks = [asyncio.create_task(w.run(), name=f"demo:{type(w).__name__}") for w in fleet.workers]
    try:
        for worker in fleet.workers:
            await worker.wait_ready()
        yield fleet
    finally:
        await asyncio.gather(*(w.stop() for w in fleet.workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)


def gateway_env(gateway: GatewaySettings) -> dict[str, str]:
    """The environment that configures the payments process's gateway like `gateway`."""
    return {f"PAYMENTS_GATEWAY_{k.upper()}": str(v) for k, v in gateway.model_dump().items()}


@contextlib.asynccontextmanager
async def as_processes(
    url: str, gateway: GatewaySettings, log_dir: Path, ready: Callable[[], Awaitable[bool]]
) -> AsyncIterator[Fleet]:
    """Each service as `framework run MODULE:Class` in its own process; SIGTERM on exit."""
    env = {**os.environ, "AMQP_URL": url, "FRAMEWORK_LOG_FORMAT": "json", **gateway_env(gateway)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cls in WORKERS:
            target = f"{cls.__module__}:{cls.__name__}"
            with (log_dir / f"{cls.queue}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(  # noqa: ASYNC220 - starting, not waiting
                        [sys.executable, "-m", "framework", "run", target],
                        cwd=examples_root(),
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 60
        while not await ready():
            dead = [p.args for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"services did not start (see {log_dir}): {dead}")
            await asyncio.sleep(0.2)
        yield Fleet(log_dir=log_dir)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
