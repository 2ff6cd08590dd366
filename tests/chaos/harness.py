"""Workload and bookkeeping shared by the chaos scenarios.

A `Run` is one scenario's world: a unique queue, message type and service prefix, the
ledger, the worker subprocess environment. `Sender` drives the workload (a producer that
retries a failed send with the same idempotency key, as a real one would). `finish`
settles the run and checks the accounting invariant.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from framework import Bus, Overloaded, PublishTimeout
from framework.errors import PublishFailed
from framework.settings import Settings
from framework.testing import BrokerAdmin
from framework.wire import names
from framework.worker import Worker
from tests.chaos import ledger as ledger_mod
from tests.chaos.ledger import Accounting, DeadLetter, Ledger, dead_letter_reason
from tests.chaos.pool import WorkerPool
from tests.chaos.service import Job, job_class, settings_from_env, worker_class

LONG = os.environ.get("CHAOS_LONG") == "1"
TARGET = "tests.chaos.service:ChaosWorker"


def scale(short: int, long: int) -> int:
    """The short (CI) or long (`CHAOS_LONG=1`, release checks) size of something."""
    return long if LONG else short


# ---- broker administration --------------------------------------------------------------


def management(method: str, path: str, body: Any = None) -> Any:
    base = os.environ.get("FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
    parts = urlsplit(base)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port}{path}", method=method, data=data
    )
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


async def connections_named(prefix: str) -> list[str]:
    connections = await asyncio.to_thread(management, "GET", "/api/connections")
    return [
        c["name"]
        for c in connections
        if str(c.get("client_properties", {}).get("connection_name", "")).startswith(prefix)
    ]


async def close_connections(prefix: str, expected: int) -> int:
    """Force-close (management API) every connection whose name starts with `prefix`,
    once at least `expected` are listed (the management view lags a little)."""
    ours: list[str] = []
    for _ in range(100):
        ours = await connections_named(prefix)
        if len(ours) >= expected:
            break
        await asyncio.sleep(0.1)
    for name in ours:
        try:
            await asyncio.to_thread(management, "DELETE", f"/api/connections/{quote(name)}")
        except urllib.error.HTTPError as exc:  # already gone
            if exc.code != 404:
                raise
    return len(ours)


def rabbitmqctl_command() -> list[str]:
    """The CLI that reaches the node under test: `CHAOS_RABBITMQCTL` (set per broker by
    scripts/on-broker, e.g. `scripts/broker4 ctl` for 4.0), else the host's `rabbitmqctl`,
    which is refused for any broker but the host's own on 5672 (never stop the other one)."""
    configured = os.environ.get("CHAOS_RABBITMQCTL")
    if configured:
        return shlex.split(configured)
    port = urlsplit(os.environ.get("AMQP_URL", "amqp://localhost/")).port or 5672
    if port != 5672:
        raise RuntimeError(
            f"AMQP_URL names a broker on port {port}: set CHAOS_RABBITMQCTL "
            "to the CLI of that node (scripts/on-broker does)"
        )
    return ["rabbitmqctl"]


async def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    process = await asyncio.create_subprocess_exec(
        *rabbitmqctl_command(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.decode()[-1000:]}")
    return out.decode()


# ---- one scenario ---------------------------------------------------------------------


@dataclass
class Run:
    """A scenario's world: names, ledger, worker environment and the figures it reports."""

    name: str
    prefix: str
    amqp_url: str
    tmp: Path
    worker_env: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.queue = f"chaos.{self.prefix}"
        self.type_name = f"tests.chaos.{self.prefix}.Job"
        self.ledger = Ledger(self.tmp / "ledger.sqlite")
        self.job: type[Job] = job_class(self.type_name)
        self.configure()

    def configure(self, **env: str) -> None:
        """Worker settings for the subprocesses (CHAOS_* variables), e.g. CHAOS_PREFETCH."""
        self.worker_env = {
            "AMQP_URL": self.amqp_url,
            "CHAOS_QUEUE": self.queue,
            "CHAOS_TYPE": self.type_name,
            "CHAOS_LEDGER": str(self.ledger.path),
            "CHAOS_SERVICE": f"{self.prefix}-w",
            **{k: v for k, v in self.worker_env.items() if k.startswith("CHAOS_")},
            **env,
        }
        self.worker_cls: type[Worker] = worker_class(self.job, **settings_from_env(self.worker_env))

    def pool(
        self, size: int = 1, slot_env: Sequence[Mapping[str, str]] = (), **env: str
    ) -> WorkerPool:
        """`size` workers; `slot_env[i]` adds variables for worker i only (e.g. AMQP_URL)."""
        log_dir = self.tmp / "logs"
        log_dir.mkdir(exist_ok=True)
        return WorkerPool(TARGET, {**self.worker_env, **env}, log_dir, size, slot_env)

    def bus(self, url: str | None = None, **settings: Any) -> Bus:
        """The producer's bus (service `<prefix>-pub`, so its connections can be found)."""
        return Bus.connect(
            url or self.amqp_url, settings=Settings(**settings), service=f"{self.prefix}-pub"
        )

    @property
    def queues(self) -> list[str]:
        spec_tiers = self.worker_spec_tiers()
        return [self.queue, *(names.retry_queue_name(self.queue, t) for t in spec_tiers)]

    def worker_spec_tiers(self) -> list[int]:
        from framework.consume.worker_spec import build_spec

        return build_spec(self.worker_cls).policy.tiers_ms()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Sender:
    """Sends jobs with idempotency keys `<prefix>-<n>`; a failed send is retried with the same
    key (up to `max_tries`), an `Overloaded` one is recorded as refused and not retried."""

    run: Run
    bus: Bus
    concurrency: int = 16
    max_tries: int = 20
    retry_pause: float = 0.2
    errors: Counter[str] = field(default_factory=Counter)
    timeout_bounds: list[float] = field(default_factory=list)  # seconds a PublishTimeout took
    messages: list[str] = field(default_factory=list)  # text of each send error

    def key(self, n: int) -> str:
        return f"{self.run.prefix}-{n}"

    async def send(self, n: int, kind: str = "ok", **fields: Any) -> str:
        key = self.key(n)
        self.run.ledger.attempt(key, kind)
        tries = 0
        while True:
            tries += 1
            started = time.monotonic()
            try:
                await self.bus.send(self.run.job(n=n, **fields), idempotency_key=key)
            except Overloaded as exc:
                self.errors["Overloaded"] += 1
                self.run.ledger.settle(key, ledger_mod.REJECTED, tries, str(exc))
                return ledger_mod.REJECTED
            except PublishFailed as exc:
                self.errors[type(exc).__name__] += 1
                self.messages.append(str(exc))
                if isinstance(exc, PublishTimeout):
                    self.timeout_bounds.append(time.monotonic() - started)
                if tries >= self.max_tries:
                    self.run.ledger.settle(key, ledger_mod.FAILED, tries, repr(exc))
                    return ledger_mod.FAILED
                await asyncio.sleep(self.retry_pause)
                continue
            self.run.ledger.settle(key, ledger_mod.CONFIRMED, tries)
            return ledger_mod.CONFIRMED

    async def send_many(
        self,
        numbers: Iterable[int],
        kind: str = "ok",
        vary: Callable[[int], dict[str, Any]] | None = None,
        rate: float | None = None,
        **fields: Any,
    ) -> Counter[str]:
        """Send jobs `numbers`, `concurrency` at a time, at most `rate` per second if set;
        `vary(n)` adds per-job fields."""
        gate = asyncio.Semaphore(self.concurrency)
        start = time.monotonic()

        async def one(i: int, n: int) -> str:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with gate:
                return await self.send(n, kind, **fields, **(vary(n) if vary else {}))

        results = await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers)))
        return Counter(results)


async def wait_settled(run: Run, admin: BrokerAdmin, timeout: float) -> float:
    """Wait until every confirmed send is handled or dead-lettered and the work queues are
    empty. Returns the seconds waited (fails the test with figures if it never settles)."""
    started = time.monotonic()
    confirmed = set(run.ledger.sends(ledger_mod.CONFIRMED))
    dlq = names.dlq_name(run.queue)
    missing = -1
    depths: list[int] = []
    while time.monotonic() - started < timeout:
        missing = len(confirmed - run.ledger.effects())
        dead = await admin.depth(dlq)
        depths = [await admin.depth(q) for q in run.queues]
        if missing <= dead and not any(depths):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(
        f"{run.name}: not settled after {timeout}s: {missing} confirmed sends neither handled "
        f"nor dead-lettered, queue depths {dict(zip(run.queues, depths, strict=True))}"
    )


async def finish(
    run: Run, admin: BrokerAdmin, pool: WorkerPool | None, settle_timeout: float = 60.0
) -> Accounting:
    """Settle, stop the workers gracefully, drain the DLQ, and account."""
    try:
        run.figures["settle_s"] = round(await wait_settled(run, admin, settle_timeout), 2)
    except AssertionError:
        if pool is not None:
            print(pool.logs_tail())
        raise
    if pool is not None:
        codes = await pool.stop()
        run.figures["worker_exit_codes"] = codes
    # any delivery still unacked when the workers stopped is back in its queue now
    left = sum([await admin.depth(q) for q in run.queues])
    dead = [
        DeadLetter(m.message_id or "", dead_letter_reason(m.headers))
        for m in await admin.drain(names.dlq_name(run.queue))
    ]
    accounting = run.ledger.account(dead, left)
    run.figures.update(accounting.as_dict())
    run.figures["time_s"] = round(run.elapsed(), 1)
    run.figures["dead"] = dead
    return accounting


def recovery_times(run: Run, moments: Iterable[float]) -> list[float]:
    """Seconds from each fault to the first handling of a message sent after it."""
    return [first - at for at in moments if (first := run.ledger.recovered_after(at)) is not None]


def recovery(times: list[float]) -> dict[str, float]:
    """Summary of recovery times (seconds)."""
    if not times:
        return {}
    return {
        "recovery_max_s": round(max(times), 2),
        "recovery_median_s": round(statistics.median(times), 2),
    }


def check(run: Run, accounting: Accounting) -> None:
    """The invariant, with every figure in the failure message."""
    problems = accounting.violations()
    figures = {k: v for k, v in run.figures.items() if k != "dead"}
    assert not problems, f"{run.name}: invariant broken: {problems}; figures {figures}"
