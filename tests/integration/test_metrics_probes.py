"""/metrics counts what a worker handled; /readyz is 503 until consuming; `framework run`
serves both on FRAMEWORK_METRICS_PORT."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

from framework import Bus, CircuitBreaker, Context, PermanentError, Worker
from framework.ops.metrics import Metrics
from framework.ops.observability import serve_worker_probes
from framework.resilience.breaker import BreakerState
from framework.testing import BrokerAdmin, eventually
from tests.integration.cli_runner import REPO
from tests.integration.ops_service import Job
from tests.integration.ops_service import JobWorker as Template  # queue unset here: tiers only


async def get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(fetch)


def sample(text: str, line_prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_match_handled_and_readyz_follows_consuming(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """6 handled and 2 dead-lettered show as counters; /readyz 503 -> 200 -> 503 on stop."""
    done = asyncio.Event()
    seen: list[str] = []

    class JobWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:
            seen.append(msg.job_id)
            if len(seen) == 8:
                done.set()
            if msg.poison:
                raise PermanentError("poison")

    worker = JobWorker(bus)
    metrics = Metrics()
    q = f'queue="{queue_name}"'
    try:
        async with serve_worker_probes(worker, 0, host="127.0.0.1", metrics=metrics) as server:
            assert (await get(server.port, "/readyz"))[0] == 503
            assert await get(server.port, "/healthz") == (200, f"alive {bus.masked_url}\n")
            assert "***" in bus.masked_url or "@" not in bus.masked_url  # never the password
            run = asyncio.create_task(worker.run())
            await worker.wait_ready()
            assert (await get(server.port, "/readyz"))[0] == 200
            for n in range(8):
                await bus.send(Job(job_id=str(n), poison=n >= 6))
            await asyncio.wait_for(done.wait(), 20)
            async with asyncio.timeout(10):
                while worker.stats.handled + worker.stats.dead_lettered < 8:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            status, body = await get(server.port, "/metrics")
            assert status == 200
            assert sample(body, f"framework_messages_handled_total{{{q}}}") == 6
            assert (
                sample(body, f'framework_messages_dead_lettered_total{{{q},reason="permanent"}}')
                == 2
            )
            assert sample(body, f"framework_handler_duration_seconds_count{{{q}}}") == 8
            assert sample(body, f"framework_messages_in_flight{{{q}}}") == 0
            assert sample(body, f"framework_queue_ready_messages{{{q}}}") is not None
            await worker.stop()
            await run
            assert (await get(server.port, "/readyz"))[0] == 503
    finally:
        await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_framework_run_serves_metrics_port(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """`framework run` with FRAMEWORK_METRICS_PORT: ready after start, counts what it handled."""
    port = _free_port()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "OPS_QUEUE": queue_name,
        "FRAMEWORK_METRICS_PORT": str(port),
        "FRAMEWORK_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework",
        "run",
        "tests.integration.ops_service:JobWorker",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    body: Any = ""
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    if (await get(port, "/readyz"))[0] == 200:
                        break
                except OSError:
                    pass  # not listening yet
                await asyncio.sleep(0.1)
        for n in range(5):
            await bus.send(Job(job_id=f"r{n}"))
        async with asyncio.timeout(20):
            while sample(body, f'framework_messages_handled_total{{queue="{queue_name}"}}') != 5:
                await asyncio.sleep(0.2)
                body = (await get(port, "/metrics"))[1]
        assert (await get(port, "/healthz"))[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        await broker_admin.delete_worker_queues(queue_name, Template(bus).spec.policy.tiers_ms())
    assert process.returncode == 0, stderr.decode()[-2000:]


async def test_running_worker_reports_its_breaker_transitions(
    bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """/metrics of a running worker follows its breaker: 0 closed, 2 once failures open
    it, 0 again after the probe that the half-open breaker lets through succeeds."""
    gateway_up = asyncio.Event()
    probed = asyncio.Event()
    breaker = CircuitBreaker("gateway", failure_threshold=2, reset_timeout=0.5)

    class Guarded(Worker):
        queue = queue_name
        retry_base_delay = 0.2
        retry_max_delay = 0.5
        breakers = (breaker,)

        async def handle(self, msg: Job, ctx: Context) -> None:
            async with breaker:
                if not gateway_up.is_set():
                    raise ConnectionError("gateway down")
            probed.set()

    worker = Guarded(bus)
    labels = f'breaker="gateway",queue="{queue_name}"'
    try:
        async with serve_worker_probes(worker, 0, host="127.0.0.1") as server:
            run = asyncio.create_task(worker.run())
            await worker.wait_ready()
            body = (await get(server.port, "/metrics"))[1]
            assert sample(body, f"framework_breaker_state{{{labels}}}") == 0
            for n in range(2):
                await bus.send(Job(job_id=str(n)))
            await eventually(lambda: breaker.state is BreakerState.OPEN, timeout=10)
            body = (await get(server.port, "/metrics"))[1]
            assert sample(body, f"framework_breaker_state{{{labels}}}") == 2
            gateway_up.set()
            await asyncio.wait_for(probed.wait(), 10)
            await eventually(lambda: breaker.state is BreakerState.CLOSED, timeout=10)
            body = (await get(server.port, "/metrics"))[1]
            assert sample(body, f"framework_breaker_state{{{labels}}}") == 0
            await worker.stop()
            await run
    finally:
        await broker_admin.delete_worker_queues(queue_name, worker.spec.policy.tiers_ms())
