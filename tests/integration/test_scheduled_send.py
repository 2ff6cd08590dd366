"""Scheduled sends on a real broker: a command sent with `delay=` / `not_before=` waits in
the countdown queues (fw.schedule.wait.*) and reaches its worker only when due."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from framework import Bus, Command, Context, Settings, Worker
from framework.publish.scheduling import UNIT_MS, delay_units, waits_of
from framework.testing import BrokerAdmin
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names
from tests.integration.cli_runner import DEAD_MANAGEMENT, framework, framework_json

# how late a due command may reach its handler on these shared, busy machines: the last
# unit, a dead-letter hop per stage it waited in, and a delivery
LATE = UNIT_MS / 1000 + 1.0
MODULE = "tests.integration.test_scheduled_send"  # where the CLI finds these commands


class Remind(Command):
    type_name = "tests.schedule.Remind"
    n: int


class Later(Command):
    type_name = "tests.schedule.Later"
    n: int


class Expire(Command):
    type_name = "tests.schedule.Expire"
    n: int


class Handled:
    """When each command was handled (epoch seconds), with a wait for a set of them."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.waited_in: dict[int, set[str]] = {}  # the queues its x-death names
        self._changed = asyncio.Condition()

    async def record(self, n: int, ctx: Context) -> None:
        deaths = ctx.headers.get(names.X_DEATH) or []
        async with self._changed:
            self.waited_in[n] = {str(death["queue"]) for death in deaths}
            self.at[n] = time.time()
            self._changed.notify_all()

    async def wait_for(self, *ns: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: all(n in self.at for n in ns))


def recording_worker(queue_name: str, handled: Handled) -> type[Worker]:
    """A worker that records when it handled each reminder."""

    class Recorder(Worker):
        queue = queue_name

        async def handle(self, msg: Remind, ctx: Context) -> None:
            await handled.record(msg.n, ctx)

    return Recorder


def expiring_worker(queue_name: str, handled: Handled) -> type[Worker]:
    """The same for `Expire` commands (a type of its own: one queue per command type)."""

    class ExpireRecorder(Worker):
        queue = queue_name

        async def handle(self, msg: Expire, ctx: Context) -> None:
            await handled.record(msg.n, ctx)

    return ExpireRecorder


async def test_delayed_command_is_handled_when_due_not_before(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """delay=1.5 s: handled no earlier than 1.5 s after the send, and within the granularity
    (plus hops); the 1.5 s chains through four stages (100+200+400+800 ms), as x-death shows."""
    handled = Handled()
    await worker_factory(recording_worker(queue_name, handled), bus)
    sent = time.time()
    await bus.send(Remind(n=1), delay=1.5)
    await handled.wait_for(1)
    waited = handled.at[1] - sent
    waits = waits_of(delay_units(1.5))
    assert waits == [100, 200, 400, 800]
    assert handled.waited_in[1] == {names.schedule_queue(ms) for ms in waits}
    assert 1.5 <= waited <= 1.5 + LATE


async def test_not_before_and_immediate_sends_keep_their_own_times(
    bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A command due at not_before waits; one sent at once meanwhile is handled at once."""
    handled = Handled()
    await worker_factory(recording_worker(queue_name, handled), bus)
    due = datetime.now(UTC) + timedelta(seconds=1)
    await bus.send(Remind(n=1), not_before=due)
    await bus.send(Remind(n=2))
    await handled.wait_for(1, 2)
    assert handled.at[2] < handled.at[1]
    assert handled.at[1] >= due.timestamp()


async def test_scheduled_command_waits_in_countdown_queues(
    bus: Bus, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """While it waits, the command is in a fw.schedule.wait.* queue, not in the worker's."""
    handled = Handled()
    await worker_factory(recording_worker(queue_name, handled), bus)
    await bus.send(Remind(n=1), delay=0.8)  # 8 units: only stage 3 (800 ms) holds it
    assert await broker_admin.depth(names.schedule_queue(800)) >= 1
    assert await broker_admin.depth(queue_name) == 0
    await handled.wait_for(1)


async def test_deadline_passing_while_scheduled_is_dead_lettered_expired(
    amqp_url: str, broker_admin: BrokerAdmin, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """A deadline that passes while the command waits wins: it is dead-lettered as
    `expired` and never handled."""
    handled = Handled()
    settings = Settings(clock_skew_tolerance=0.1)
    async with Bus.connect(amqp_url, settings=settings, service="tests") as strict:
        await worker_factory(expiring_worker(queue_name, handled), strict)
        await strict.send(Expire(n=1), delay=1.5, ttl=0.5)
        dlq = names.dlq_name(queue_name)
        assert await broker_admin.wait_for_depth(dlq, 1, timeout=15) == 1
        [dead] = await broker_admin.drain(dlq)
    assert dead.headers[names.REASON] == "expired"
    assert handled.at == {}


async def test_bad_schedules_are_refused_before_anything_is_sent(bus: Bus) -> None:
    """Negative delays, both keywords, naive datetimes and delays beyond 7 days raise."""
    from framework.publish.scheduling import InvalidSchedule

    with pytest.raises(InvalidSchedule, match="negative"):
        await bus.send(Remind(n=1), delay=-1)
    with pytest.raises(InvalidSchedule, match="not both"):
        await bus.send(Remind(n=1), delay=1, not_before=datetime.now(UTC))
    with pytest.raises(InvalidSchedule, match="time zone"):
        await bus.send(Remind(n=1), not_before=datetime.now())
    with pytest.raises(InvalidSchedule, match="maximum"):
        await bus.send(Remind(n=1), delay=8 * 24 * 3600)


async def test_queues_cli_shows_scheduled_commands(amqp_url: str, bus: Bus) -> None:
    """`framework queues` lists the countdown as the row `fw.schedule`, counting the
    commands waiting there (read exactly through AMQP, management disabled)."""
    await bus.send(Later(n=1), delay=30)  # a type no queue takes: nothing will handle it
    env = {"FRAMEWORK_MANAGEMENT_URL": DEAD_MANAGEMENT}
    [row] = await asyncio.to_thread(
        framework_json, amqp_url, "queues", "--json", names.SCHEDULE_ROW, env=env
    )
    assert row["name"] == names.SCHEDULE_ROW
    assert row["scheduled"] >= 1
    assert (row["ready"], row["retry"], row["dlq"]) == (0, 0, 0)
    table = await asyncio.to_thread(framework, amqp_url, "queues", names.SCHEDULE_ROW, env=env)
    assert table.returncode == 0, table.stderr
    assert "sched" in table.stdout and names.SCHEDULE_ROW in table.stdout


async def test_cli_send_delay_schedules_the_command(
    amqp_url: str, bus: Bus, worker_factory: WorkerFactory, queue_name: str
) -> None:
    """`framework send TYPE JSON --delay 1` prints the key at once; the worker gets the
    command no earlier than a second after the send started."""
    handled = Handled()
    await worker_factory(recording_worker(queue_name, handled), bus)
    started = time.time()
    result = await asyncio.to_thread(
        framework,
        amqp_url,
        "send",
        Remind.type_name,
        '{"n": 9}',
        "--delay",
        "1",
        "--key",
        f"{queue_name}-remind-9",
        "--module",
        MODULE,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{queue_name}-remind-9"
    await handled.wait_for(9)
    assert handled.at[9] >= started + 1


def test_cli_send_delay_over_the_maximum_is_one_error_line(amqp_url: str) -> None:
    """A delay beyond 7 days is refused before anything is sent: one `error:` line."""
    result = framework(
        amqp_url, "send", Remind.type_name, '{"n": 1}', "--delay", "700000", "--module", MODULE
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: delay=700000s is over the maximum")
