"""Local replicas: newer versions win, duplicates and late events change nothing, staleness
is measured, SQLite keeps everything across a restart, refresh requests are owned tasks."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from framework import ApplyResult, Command, Event, Replica, Unroutable
from framework.replica.refresh import refresh_due
from framework.replica.store import Row, decide_apply


class Person(Event):
    type_name = "tests.replica.Person.v1"
    person_id: str
    version: int
    email: str


class Refresh(Command):
    type_name = "tests.replica.Refresh.v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def people(clock: FakeClock, path: Path | None = None) -> Replica[Person]:
    return Replica(
        "people",
        Person,
        key=lambda p: p.person_id,
        version=lambda p: p.version,
        path=path,
        clock=clock,
    )


def test_decide_apply_rule() -> None:
    """New or newer: applied; same key: duplicate; same version: current; older: stale."""
    row = Row("p1", 3, "k3", "{}")
    assert decide_apply(None, 1, "k1") is ApplyResult.APPLIED
    assert decide_apply(row, 3, "k3") is ApplyResult.DUPLICATE
    assert decide_apply(row, 4, "k4") is ApplyResult.APPLIED
    assert decide_apply(row, 3, "snapshot") is ApplyResult.CURRENT
    assert decide_apply(row, 2, "k2") is ApplyResult.STALE


@pytest.mark.parametrize("durable", [False, True])
def test_newer_versions_win_and_late_events_are_ignored(durable: bool, tmp_path: Path) -> None:
    """An older version arriving after a newer one does not overwrite it (both backends)."""
    clock = FakeClock()
    with people(clock, tmp_path / "r.db" if durable else None) as replica:
        assert (
            replica.apply(Person(person_id="p1", version=2, email="new@x"), event_key="k2")
            is ApplyResult.APPLIED
        )
        assert (
            replica.apply(Person(person_id="p1", version=1, email="old@x"), event_key="k1")
            is ApplyResult.STALE
        )
        assert (
            replica.apply(Person(person_id="p1", version=2, email="new@x"), event_key="k2")
            is ApplyResult.DUPLICATE
        )
        found = replica.get("p1")
        assert found is not None and found.email == "new@x"
        assert replica.get("nobody") is None
        assert len(replica) == 1
        assert replica.counts[ApplyResult.STALE] == 1


def test_staleness_counts_from_the_last_change_or_confirmation() -> None:
    """Never updated: infinite; then seconds since the last applied or re-confirmed event."""
    clock = FakeClock()
    replica = people(clock)
    assert math.isinf(replica.staleness())
    replica.apply(Person(person_id="p1", version=1, email="a@x"), event_key="k1")
    clock.now += 30
    assert replica.staleness() == pytest.approx(30)
    replica.apply(Person(person_id="p1", version=1, email="a@x"), event_key="snapshot-1")
    assert replica.staleness() == 0
    clock.now += 5
    replica.apply(Person(person_id="p1", version=1, email="a@x"), event_key="k1")
    assert replica.staleness() == pytest.approx(5), "a duplicate says nothing about freshness"


def test_sqlite_replica_survives_a_restart(tmp_path: Path) -> None:
    """Rows and the last-updated time come back when the file is reopened."""
    clock = FakeClock()
    path = tmp_path / "people.db"
    with people(clock, path) as replica:
        replica.apply(Person(person_id="p1", version=4, email="a@x"), event_key="k4")
    clock.now += 10
    with people(clock, path) as reopened:
        assert reopened.version("p1") == 4
        assert reopened.last_updated == 1000.0
        assert reopened.staleness() == pytest.approx(10)
        assert (
            reopened.apply(Person(person_id="p1", version=4, email="a@x"), event_key="k4")
            is ApplyResult.DUPLICATE
        )
        assert [p.person_id for p in reopened.items()] == ["p1"]


def test_refresh_due_when_older_than_max_age() -> None:
    """A never-filled replica asks at once; a fresh one does not."""
    assert refresh_due(math.inf, 60)
    assert refresh_due(60, 60)
    assert not refresh_due(59.9, 60)


class RecordingSender:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Command] = []
        self.fail = fail

    async def send(self, command: Command) -> str:
        if self.fail:
            raise Unroutable("nobody handles it", routing_key=command.type_name)
        self.sent.append(command)
        return "key"


class Rounds:
    """The refresher's sleep, stepped by the test: the first `limit - 1` pauses return at
    once, the `limit`-th parks until the block exits (its cancellation is recorded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pauses = 0
        self.parked = asyncio.Event()
        self.cancelled = False

    async def sleep(self, seconds: float) -> None:
        self.pauses += 1
        if self.pauses < self.limit:
            await asyncio.sleep(0)
            return
        self.parked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_refresher_asks_while_stale_and_stops_with_its_block() -> None:
    """Asks at once while the replica is empty, repeats each period, stops on exit."""
    replica = people(FakeClock())
    sender = RecordingSender()
    rounds = Rounds(limit=3)
    async with replica.refreshing(sender, Refresh, every=0.01, sleep=rounds.sleep) as refresher:
        await rounds.parked.wait()
        assert len(sender.sent) == refresher.requests_sent == 3  # at once, then after 2 pauses
    assert rounds.cancelled, "the task was cancelled with its block"
    assert len(sender.sent) == 3


async def test_refresher_stays_quiet_while_fresh() -> None:
    """A replica fed within max_age sends nothing."""
    clock = FakeClock()
    replica = people(clock)
    replica.apply(Person(person_id="p1", version=1, email="a@x"), event_key="k1")
    sender = RecordingSender()
    rounds = Rounds(limit=3)
    async with replica.refreshing(sender, Refresh, every=0.01, max_age=60, sleep=rounds.sleep):
        await rounds.parked.wait()
    assert sender.sent == []


async def test_refresher_survives_an_absent_owner() -> None:
    """Unroutable (owner not deployed) is logged and asked again next period, not raised."""
    sender = RecordingSender(fail=True)
    rounds = Rounds(limit=3)
    replica = people(FakeClock())
    async with replica.refreshing(sender, Refresh, every=0.01, sleep=rounds.sleep) as refresher:
        await rounds.parked.wait()  # three checks, each refused, and the task still runs
    assert refresher.requests_sent == 0
    assert rounds.cancelled
