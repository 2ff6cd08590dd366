"""Workloads that drive worker processes: (D) RSS during a backlog drain, (E) 1 vs 2 processes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any

from bench.common import (
    cpu_seconds,
    delete_queues,
    local_broker_pid,
    preload,
    queue_name,
    rss_kib,
)
from bench.contenders import CONTENDERS


@dataclass
class WorkerProc:
    proc: asyncio.subprocess.Process
    log: IO[bytes]
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    reader: asyncio.Task[None] | None = field(default=None, repr=False)

    async def read_progress(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            parts = line.decode().split()
            if parts and parts[0] == "P":
                self.count, self.first, self.last = int(parts[1]), float(parts[2]), float(parts[3])

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())

    def stderr_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


async def start_worker(contender: str, queue: str) -> WorkerProc:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_worker
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.child",
        contender,
        "worker",
        "--queue",
        queue,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    worker = WorkerProc(proc, log)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            while (line := await proc.stdout.readline()) and line.strip() != b"READY":
                pass
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"{contender} worker never got ready: {worker.stderr_tail()}") from None
    if not line:
        raise RuntimeError(f"{contender} worker exited early: {worker.stderr_tail()}")
    worker.reader = asyncio.create_task(worker.read_progress())
    return worker


async def stop_worker(worker: WorkerProc) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        worker.send("STOP")
    try:
        await asyncio.wait_for(worker.proc.wait(), 60)
    except TimeoutError:
        worker.proc.kill()
        await worker.proc.wait()
    if worker.reader is not None:
        await worker.reader
    worker.log.close()


async def _prepared_queue(url: str, contender: str, workload: str, n: int) -> tuple[str, list[str]]:
    """A queue declared the contender's way, holding n messages; returns it and its companions."""
    impl = CONTENDERS[contender]()
    queue = queue_name(contender, workload)
    await impl.open(url)
    try:
        await impl.declare(queue)
        companions = impl.queues(queue)
    finally:
        await impl.close()
    await preload(url, queue, n)
    return queue, companions


async def _wait_handled(
    workers: list[WorkerProc], n: int, timeout: float, on_tick: Any = None
) -> None:
    async with asyncio.timeout(timeout):
        while sum(w.count for w in workers) < n:
            if any(w.proc.returncode is not None for w in workers):
                raise RuntimeError("a worker died: " + workers[0].stderr_tail())
            if on_tick is not None:
                on_tick()
            await asyncio.sleep(0.05)


async def rss_drain(url: str, contender: str, backlog: int) -> dict[str, Any]:
    """(D) RSS of one worker process while it drains `backlog` messages."""
    queue, companions = await _prepared_queue(url, contender, "D", backlog)
    worker: WorkerProc | None = None
    try:
        worker = await start_worker(contender, queue)
        pid = worker.proc.pid
        start = rss_kib(pid)
        peak = start
        worker.send("GO")

        def sample() -> None:
            nonlocal peak
            peak = max(peak, rss_kib(pid))

        t0 = time.monotonic()
        await _wait_handled([worker], backlog, 900, sample)
        seconds = time.monotonic() - t0
        end = rss_kib(pid)
        peak = max(peak, end)
    finally:
        if worker is not None:
            await stop_worker(worker)
        await delete_queues(url, companions)
    return {
        "start_mib": start / 1024,
        "peak_mib": peak / 1024,
        "end_mib": end / 1024,
        "growth_pct": (end - start) / start * 100,
        "peak_growth_pct": (peak - start) / start * 100,
        "rate": backlog / seconds,
        "n": backlog,
    }


async def scaling(url: str, contender: str, processes: int, n: int) -> dict[str, Any]:
    """(E) `processes` worker processes draining one queue of n messages."""
    queue, companions = await _prepared_queue(url, contender, f"E{processes}", n)
    workers: list[WorkerProc] = []
    try:
        workers = list(
            await asyncio.gather(*(start_worker(contender, queue) for _ in range(processes)))
        )
        broker = local_broker_pid()
        pids = [w.proc.pid for w in workers] + ([broker] if broker else [])
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        t0 = time.monotonic()
        for worker in workers:
            worker.send("GO")
        await _wait_handled(workers, n, 300)
        # how busy the machine was: the workers' and the broker's CPU over the run, in cores
        busy_cores = (sum(cpu_seconds(pid) for pid in pids) - cpu0) / (time.monotonic() - t0)
        # steady state, as in B: from the first message handled by any process to the last
        # (each process's start-up, the same in both cases, is reported apart)
        first = min(w.first for w in workers if w.count)
        elapsed = max(w.last for w in workers) - first
    finally:
        await asyncio.gather(*(stop_worker(w) for w in workers))
        await delete_queues(url, companions)
    return {
        "rate": (n - 1) / elapsed,
        "seconds": elapsed,
        "processes": processes,
        "startup_ms": (first - t0) * 1000,
        "split": [w.count for w in workers],
        "n": n,
        "busy_cores": busy_cores,
        "broker_measured": broker is not None,
    }
