"""A pool of worker subprocesses, each `python -m framework run MODULE:Class`.

A supervisor restarts any worker that exits while the pool is running (like a container
restart policy), so scenarios can SIGKILL workers or let poison crash them. Logs of every
generation of every worker are kept in the test's tmp dir for post-mortems.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY_MARK = b'"worker.consuming"'


@dataclass
class Slot:
    """One worker position in the pool and the history of its processes."""

    index: int
    process: asyncio.subprocess.Process | None = None
    log: Path | None = None
    generation: int = 0
    exits: list[int] = field(default_factory=list)
    ready: bool = False  # the current process logged that it consumes


class WorkerPool:
    """Start `size` workers of `target` with `env`; restart them when they die."""

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        log_dir: Path,
        size: int = 1,
        slot_env: Sequence[Mapping[str, str]] = (),
    ) -> None:
        self.target = target
        self.env = {**os.environ, **env, "FRAMEWORK_LOG_FORMAT": "json"}
        self.slot_env = list(slot_env)  # per worker position, over `env` (e.g. AMQP_URL)
        self.log_dir = log_dir
        self.slots = [Slot(i) for i in range(size)]
        self.restarts = 0
        self.recovery_times: list[float] = []  # process start -> consuming, after a death
        self._supervisor: asyncio.Task[None] | None = None
        self._running = False

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, ready_timeout: float = 30.0) -> None:
        self._running = True
        for slot in self.slots:
            await self._spawn(slot)
        for slot in self.slots:
            await self.wait_ready(slot, ready_timeout)
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every worker (graceful drain), SIGKILL what is still alive after `timeout`."""
        self._running = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        codes: list[int | None] = []
        for slot in self.slots:
            process = slot.process
            if process is None:
                codes.append(None)
                continue
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            try:
                codes.append(await asyncio.wait_for(process.wait(), timeout))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                codes.append(None)
        return codes

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # ---- faults ------------------------------------------------------------------------

    def kill(self, index: int, sig: signal.Signals = signal.SIGKILL) -> float:
        """Send `sig` to worker `index`; the supervisor restarts it. Returns the moment."""
        slot = self.slots[index]
        assert slot.process is not None
        slot.ready = False
        with contextlib.suppress(ProcessLookupError):
            slot.process.send_signal(sig)
        return time.time()

    async def kill_random_ready(
        self, rng: random.Random, sig: signal.Signals = signal.SIGKILL
    ) -> float:
        """Kill a worker that is up and consuming (waits for one). Returns the moment."""
        while True:
            ready = [
                s.index
                for s in self.slots
                if s.ready and s.process is not None and s.process.returncode is None
            ]
            if ready:
                return self.kill(rng.choice(ready), sig)
            await asyncio.sleep(0.02)

    def pid(self, index: int) -> int:
        process = self.slots[index].process
        assert process is not None
        return process.pid

    def rss_kib(self, index: int) -> int | None:
        """The worker's resident set size (VmRSS) in KiB, None if it is gone."""
        try:
            status = Path(f"/proc/{self.pid(index)}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def exits(self) -> list[int]:
        return [code for slot in self.slots for code in slot.exits]

    def logs_tail(self, chars: int = 3000) -> str:
        parts = []
        for slot in self.slots:
            if slot.log is not None and slot.log.exists():
                parts.append(f"--- {slot.log.name}\n{slot.log.read_text()[-chars:]}")
        return "\n".join(parts)

    # ---- internals -----------------------------------------------------------------------

    async def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.ready = False
        slot.log = self.log_dir / f"worker-{slot.index}-{slot.generation}.log"
        with slot.log.open("wb") as log:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "framework",
                "run",
                self.target,
                cwd=REPO,
                env=self._env(slot),
                stdout=log,
                stderr=log,
            )

    def _env(self, slot: Slot) -> dict[str, str]:
        if slot.index < len(self.slot_env):
            return {**self.env, **self.slot_env[slot.index]}
        return self.env

    async def wait_ready(self, slot: Slot, timeout: float = 30.0) -> float:
        """Wait until the worker logged that it consumes; returns how long that took."""
        started = time.monotonic()
        assert slot.log is not None and slot.process is not None
        while time.monotonic() - started < timeout:
            if READY_MARK in slot.log.read_bytes():
                slot.ready = True
                return time.monotonic() - started
            if slot.process.returncode is not None:
                raise AssertionError(
                    f"worker {slot.index} exited with {slot.process.returncode} before "
                    f"consuming:\n{slot.log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"worker {slot.index} not consuming after {timeout}s:\n{slot.log.read_text()[-3000:]}"
        )

    async def _supervise(self) -> None:
        while self._running:
            for slot in self.slots:
                process = slot.process
                if process is None or process.returncode is None:
                    continue
                slot.exits.append(process.returncode)
                self.restarts += 1
                await self._spawn(slot)
                with contextlib.suppress(AssertionError):
                    self.recovery_times.append(await self.wait_ready(slot))
            await asyncio.sleep(0.02)
