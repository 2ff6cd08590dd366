"""Order per key on the in-memory bus: the same partitions, routing and in-place retries
as on RabbitMQ (in-place waits use the real clock: keep the delays short)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import ClassVar

from framework import Command, Context, Worker
from framework.consume.ordering import order_bucket, partition_of
from framework.testing import MemoryBus, eventually


class Visit(Command):
    type_name = "tests.ordering_memory.Visit"
    ordered_by: ClassVar[str] = "patient"
    patient: str
    seq: int


def _worker(seen: dict[str, list[tuple[int, int]]], replica: list[str]) -> type[Worker]:
    class Clinic(Worker):
        queue = "clinic"
        ordered_by = "patient"
        partitions = 3
        retry_base_delay = 0.01
        retry_max_delay = 0.02

        async def handle(self, msg: Visit, ctx: Context) -> None:
            seen[msg.patient].append((msg.seq, ctx.attempt))
            replica.append(f"{id(self)}:{partition_of(order_bucket(msg.patient), 3)}")
            await asyncio.sleep(0)
            if msg.seq % 4 == 1 and ctx.attempt == 1:
                raise ConnectionError("flaky")

    return Clinic


async def test_each_key_in_publish_order_with_retries_in_place() -> None:
    """Failed visits are retried before the patient's next visit; no delay queue is used."""
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    async with MemoryBus() as bus:
        await bus.start_worker(_worker(seen, []))
        for seq, patient in itertools.product(range(8), ["ann", "bob", "cid", "dee"]):
            await bus.send(Visit(patient=patient, seq=seq))
        await bus.drain()
        assert bus.dead_letters("clinic") == []
        assert not any(".retry." in name for name in bus.broker.queue_names())
    for patient in ("ann", "bob", "cid", "dee"):
        expected = [(s, a) for s in range(8) for a in ((1, 2) if s % 4 == 1 else (1,))]
        assert seen[patient] == expected, patient


async def test_one_replica_is_active_per_partition_and_a_standby_takes_over() -> None:
    """With two replicas, each partition is handled by one of them only (single active
    consumer); when it stops, the other takes its partitions over, still in order."""
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    handled_by: list[str] = []
    patients = [f"p{i}" for i in range(12)]
    async with MemoryBus() as bus:
        worker_cls = _worker(seen, handled_by)
        first = await bus.start_worker(worker_cls)
        second = await bus.start_worker(worker_cls)
        for seq, patient in itertools.product(range(4), patients):
            await bus.send(Visit(patient=patient, seq=seq))
        await bus.drain()
        before = len(handled_by)
        await first.stop()
        for seq, patient in itertools.product(range(4, 8), patients):
            await bus.send(Visit(patient=patient, seq=seq))
        await bus.drain()
    replicas_per_partition: dict[str, set[str]] = defaultdict(set)
    for entry in handled_by[:before]:
        replica, partition = entry.split(":")
        replicas_per_partition[partition].add(replica)
    assert all(len(replicas) == 1 for replicas in replicas_per_partition.values())
    assert {entry.split(":")[0] for entry in handled_by[before:]} == {str(id(second))}
    for patient in patients:
        assert [s for s, _ in itertools.groupby(s for s, _ in seen[patient])] == list(range(8))


async def test_a_stopping_replica_hands_its_partition_over_only_when_it_lets_go() -> None:
    """Stopped while handling a key's message, a replica finishes it, parks the next one
    (unhandled, unacked) and returns it on closing: the standby goes on in order, and no
    key is ever handled by both at once."""
    release = asyncio.Event()
    started = asyncio.Event()
    log: list[tuple[int, int]] = []
    running: set[str] = set()
    overlaps: list[int] = []

    class Slow(Worker):
        queue = "clinic"
        ordered_by = "patient"
        partitions = 1

        async def handle(self, msg: Visit, ctx: Context) -> None:
            if msg.patient in running:
                overlaps.append(msg.seq)
            running.add(msg.patient)
            try:
                if msg.seq == 0:
                    started.set()
                    await release.wait()
                log.append((id(self), msg.seq))
            finally:
                running.discard(msg.patient)

    async with MemoryBus(service="first") as bus:
        first = await bus.start_worker(Slow)
        second = Slow(bus)
        second_task = asyncio.create_task(second.run())
        await second.wait_ready()
        for seq in range(4):
            await bus.send(Visit(patient="ann", seq=seq))
        await started.wait()
        stopping = asyncio.create_task(first.stop())
        consumer = first._consumer
        assert consumer is not None
        await eventually(lambda: not consumer.consuming)  # paused: the drain has begun
        release.set()
        await stopping
        await bus.drain()
        await second.stop()
        await second_task
    assert log == [(id(first), 0), (id(second), 1), (id(second), 2), (id(second), 3)]
    assert overlaps == []
