"""Load status on the broker: workers publish what they measure, senders follow it.

With `FRAMEWORK_SHED_BY_FORECAST=true` (`Settings.shed_by_forecast`):

- every running worker publishes a `LoadReport` about its queue each
  `load_report_interval` seconds on the topic exchange `fw.load` (routing key: the queue):
  its handling rate, in-flight count and the queue's ready count (one passive declare);
- every bus follows `fw.load` with an exclusive, auto-delete queue of its own
  (`<service>.load.<random>`), keeps the latest report per replica (`LoadBoard`) and, in
  `send`, refuses a command whose predicted wait exceeds the time left to its deadline
  with `Overloaded(retry_after=...)` (`LoadFollower.refuse_if_late`) - no broker round trip
  per send.

Reports are disposable: not persistent, they expire after their freshness horizon, and a
report that cannot be read or published is logged (throttled) and skipped. Without fresh
reports nothing is refused.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from framework.consume.deadlines import combine_deadline
from framework.consume.decisions import Settlement
from framework.errors import Overloaded
from framework.resilience.load_forecast import (
    STALE_INTERVALS,
    BacklogTrend,
    HandlingRate,
    LoadBoard,
    LoadReport,
    refusal,
)
from framework.resilience.log_throttle import LogThrottle
from framework.wire import names
from framework.wire.envelope import Envelope
from framework.wire.topology import ExchangeSpec, Topology

if TYPE_CHECKING:
    from framework.wire.port import BrokerPort, Closer
    from framework.worker import Worker

# Declared (like fw.commands / fw.events: passively, created only if missing and allowed)
# by every bus with shedding on, on start and after each reconnect.
LOAD_TOPOLOGY = Topology(exchanges=(ExchangeSpec(names.LOAD_EXCHANGE, "topic"),))

_log = structlog.get_logger("framework.load_status")


def start_load_reports(worker: Worker) -> list[asyncio.Task[None]]:
    """The task publishing `worker`'s load reports (owned by its run loop), if shedding is
    on for its bus; else none."""
    settings = worker.bus.settings
    if not settings.shed_by_forecast:
        return []
    reporter = LoadReporter(worker, settings.load_report_interval)
    return [asyncio.create_task(reporter.run(), name=f"load-reports:{worker.spec.queue}")]


class LoadReporter:
    """Measures one worker and publishes its `LoadReport` every `interval` seconds."""

    def __init__(self, worker: Worker, interval: float) -> None:
        spec = worker.spec
        self._worker = worker
        self._interval = interval
        self._queue = spec.queue
        self._types = tuple(
            b.routing_key
            for b in spec.topology.bindings
            if b.exchange == names.COMMANDS_EXCHANGE and b.queue == spec.queue
        )
        self._replica = f"{worker.bus.service}.{os.urandom(6).hex()}"
        self._rate = HandlingRate(window=max(10.0, 5 * interval))
        self._trend = BacklogTrend()
        self._failures = LogThrottle()

    async def run(self) -> None:
        """Report until cancelled; a failed reading or publish skips that report."""
        stats, rate = self._worker.stats, self._rate
        rate.start(time.monotonic())

        def settled(settlement: Settlement, duration: float) -> None:
            # a plain function, not a bound method: copying the stats copies no reporter
            rate.settled(duration, time.monotonic())

        stats.observers.append(settled)
        try:
            while True:
                await asyncio.sleep(self._interval)  # the queue is declared by then
                try:
                    await self._report()
                except Exception as exc:  # noqa: BLE001 - a report is disposable; next one
                    repeated = self._failures.admit(type(exc).__name__)
                    if repeated is not None:
                        _log.warning(
                            "load.report_failed",
                            queue=self._queue,
                            error=repr(exc),
                            repeated=repeated,
                            hint="senders stop shedding for this queue until reports resume",
                        )
        finally:
            stats.observers.remove(settled)

    async def _report(self) -> None:
        bus = self._worker.bus
        backlog = await self._read_backlog()
        now = time.monotonic()
        report = LoadReport(
            queue=self._queue,
            replica=self._replica,
            types=self._types,
            backlog=backlog,
            backlog_trend=self._trend.read(backlog, now),
            in_flight=self._worker.stats.in_flight,
            rate=self._rate.rate(now, self._worker.spec.prefetch),
            handling=self._rate.mean_duration(now),
            interval=self._interval,
        )
        message_id = f"load-{self._replica}-{os.urandom(4).hex()}"
        envelope = Envelope(
            message_id=message_id,
            type="fw.load-report",
            body=report.model_dump_json().encode(),
            correlation_id=message_id,
            app_id=bus.service,
        )
        await bus.port.publish(
            envelope,
            names.LOAD_EXCHANGE,
            self._queue,
            expiration_ms=int(STALE_INTERVALS * self._interval * 1000),
            mandatory=False,
            timeout=self._interval,
        )

    async def _read_backlog(self) -> int:
        """The queue's ready messages (a passive declare: `BrokerPort.ready_count`)."""
        async with asyncio.timeout(self._interval):
            return await self._worker.bus.port.ready_count(self._queue)


class LoadFollower:
    """A bus's view of the load reports: a queue of its own bound to `fw.load`, consumed
    without acks into a `LoadBoard` (`BrokerPort.follow`). After a reconnect the port
    restores queue, binding and consumer; in between the reports go stale and nothing is
    refused."""

    def __init__(self, service: str) -> None:
        self.board = LoadBoard()
        self._queue_name = f"{service}.load.{os.urandom(6).hex()}"
        self._following: Closer | None = None
        self._invalid = LogThrottle()
        self.refusals = 0  # sends refused (a metric may read it)
        self.received = 0  # reports recorded

    @property
    def queue_name(self) -> str:
        """The follower's queue: inside the service's own names (its user may configure it)."""
        return self._queue_name

    async def start(self, port: BrokerPort) -> None:
        """Follow every report on `fw.load` through `port`."""
        self._following = await port.follow(names.LOAD_EXCHANGE, self._queue_name, self._on_body)

    async def close(self) -> None:
        following, self._following = self._following, None
        if following is not None:
            await following.close()

    def _on_body(self, body: bytes) -> None:
        self.receive(body, time.monotonic())

    def receive(self, body: bytes, received: float) -> None:
        """Record one report body received at `received` (monotonic); a bad one is logged."""
        try:
            report = LoadReport.model_validate_json(body)
        except ValidationError as exc:
            repeated = self._invalid.admit("invalid")
            if repeated is not None:
                _log.warning(
                    "load.report_invalid",
                    error=str(exc).splitlines()[0],
                    repeated=repeated,
                    hint=f"only framework workers may publish on {names.LOAD_EXCHANGE}",
                )
            return
        self.board.record(report, received)
        self.received += 1

    def refuse_if_late(
        self,
        type_name: str,
        key: str,
        deadline: datetime | None,
        ttl: float | None,
        *,
        now: float | None = None,
        monotonic: float | None = None,
    ) -> None:
        """Raise `Overloaded(retry_after=...)` if a `type_name` command with this deadline
        (the earlier of `deadline` and now + `ttl`) is predicted to wait past it."""
        if deadline is None and ttl is None:
            return
        wall = time.time() if now is None else now
        deadline_ms = combine_deadline(int(wall * 1000), deadline, ttl)
        if deadline_ms is None:
            return
        mono = time.monotonic() if monotonic is None else monotonic
        wait = self.board.predicted_wait(type_name, mono)
        time_left = deadline_ms / 1000 - wall
        retry_after = refusal(wait, time_left, unknown=_UNKNOWN_RETRY_AFTER)
        if retry_after is None or wait is None:
            return
        self.refusals += 1
        predicted = "never (no measured rate)" if math.isinf(wait) else f"in about {wait:.2f}s"
        raise Overloaded(
            f"refused {type_name} {key}: its queue would handle it {predicted} but its "
            f"deadline is {time_left:.2f}s away; retry after "
            f"{retry_after:.2f}s with a fresh deadline, or send with a longer one",
            routing_key=type_name,
            message_id=key,
            retry_after=retry_after,
        )


# retry_after when a backlog has no measured rate (no worker finished anything lately)
_UNKNOWN_RETRY_AFTER = 5.0
