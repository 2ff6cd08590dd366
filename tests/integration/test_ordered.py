"""Order per key on the real broker: partition queues with single-active-consumer, several
replicas, transient failures retried in place."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import ClassVar

import aio_pika
import pytest

from framework import Bus, Command, Context, PermanentError, Unroutable, Worker
from framework.consume.ordering import order_bucket, partition_of
from framework.consume.partitions import PartitionedSubscription
from framework.idempotency import MemoryStore
from framework.resilience.breaker import BreakerState, CircuitBreaker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names
from framework.wire.consumer import Consumer
from tests.integration.dlq_harness import cli

PARTITIONS = 4


class Step(Command):
    type_name = "tests.ordered.Step"
    ordered_by: ClassVar[str] = "customer_id"
    customer_id: str
    seq: int


class Journal:
    """What the replicas' handlers saw: every attempt and every success, per key."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[int]] = defaultdict(list)
        self.done: dict[str, list[int]] = defaultdict(list)
        self.running: set[str] = set()
        self.overlaps: list[str] = []  # a key handled twice at once (must stay empty)
        self.most_at_once = 0  # keys handled at the same time (parallelism across keys)
        self.replicas: set[str] = set()

    def enter(self, msg: Step, replica: str) -> None:
        if msg.customer_id in self.running:
            self.overlaps.append(msg.customer_id)
        self.running.add(msg.customer_id)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.attempts[msg.customer_id].append(msg.seq)
        self.replicas.add(replica)

    def leave(self, msg: Step, ok: bool) -> None:
        self.running.discard(msg.customer_id)
        if ok:
            self.done[msg.customer_id].append(msg.seq)

    def total_done(self) -> int:
        return sum(len(v) for v in self.done.values())


@contextlib.asynccontextmanager
async def replicas(
    amqp_url: str, worker_cls: type[Worker], count: int, name: str = "tests.r"
) -> AsyncIterator[list[Worker]]:
    """`count` replicas of `worker_cls`, each on its own Bus (own connections, service
    `name` + index), sharing one idempotency store; stopped at the end."""
    store = MemoryStore()
    async with contextlib.AsyncExitStack() as stack:
        workers: list[Worker] = []
        tasks: list[asyncio.Task[None]] = []
        for index in range(count):
            bus = await stack.enter_async_context(
                Bus.connect(amqp_url, service=f"{name}{index}", idempotency=store)
            )
            worker = worker_cls(bus)
            tasks.append(asyncio.create_task(worker.run()))
            await worker.wait_ready()
            workers.append(worker)
        try:
            yield workers
        finally:
            for worker, task in zip(workers, tasks, strict=True):
                await worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    await store.close()


@pytest.fixture
async def cleanup(broker_admin: BrokerAdmin, queue_name: str) -> AsyncIterator[None]:
    yield
    await broker_admin.delete_queues(
        *(names.partition_queue_name(queue_name, p) for p in range(PARTITIONS)),
        names.dlq_name(queue_name),
    )


def ordered_worker(
    queue_name: str, journal: Journal, fail_first: set[int], pause: float = 0.002
) -> type[Worker]:
    class Ordered(Worker):
        queue = queue_name
        ordered_by = "customer_id"
        partitions = PARTITIONS
        retry_base_delay = 0.05
        retry_max_delay = 0.2
        shutdown_grace = 5.0

        async def handle(self, msg: Step, ctx: Context) -> None:
            journal.enter(msg, self.bus.service)
            ok = False
            try:
                await asyncio.sleep(pause)  # long enough for keys to overlap
                if msg.seq in fail_first and ctx.attempt == 1:
                    raise ConnectionError("dependency hiccup")
                ok = True
            finally:
                journal.leave(msg, ok)

    return Ordered


async def send_interleaved(bus: Bus, customers: list[str], count: int) -> None:
    """`count` steps per customer, interleaved, each confirmed before the next is sent."""
    for seq, customer in itertools.product(range(count), customers):
        await bus.send(Step(customer_id=customer, seq=seq), idempotency_key=f"{customer}-{seq}")


async def test_per_key_order_across_replicas_with_failures(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str, cleanup: None
) -> None:
    """Three replicas, transient failures: each key's steps succeed once each, in publish
    order, never two at once; a failed step is retried before the next step of its key."""
    journal = Journal()
    customers = [f"c{i}" for i in range(8)]
    worker_cls = ordered_worker(queue_name, journal, fail_first={3, 7, 11})
    async with replicas(amqp_url, worker_cls, 3) as workers:
        await send_interleaved(bus, customers, 15)
        await eventually(lambda: journal.total_done() == 15 * len(customers))
        await eventually(lambda: sum(w.stats.handled for w in workers) == 15 * len(customers))
        assert sum(w.stats.retried for w in workers) == 3 * len(customers)
    for customer in customers:
        assert journal.done[customer] == list(range(15)), customer
        assert journal.attempts[customer] == sorted(journal.attempts[customer]), customer
    assert journal.overlaps == []
    assert journal.most_at_once > 1  # different keys ran in parallel
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


async def test_blocked_key_holds_only_its_partition(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str, cleanup: None
) -> None:
    """While one key's message fails again and again, keys on other partitions are all
    handled; once it succeeds, its later messages follow in order."""
    journal = Journal()
    stuck = "stuck"
    stuck_partition = partition_of(order_bucket(stuck), PARTITIONS)
    others = [
        c
        for c in (f"k{i}" for i in range(40))
        if partition_of(order_bucket(c), PARTITIONS) != stuck_partition
    ][:6]
    release = asyncio.Event()

    class Blocking(Worker):
        queue = queue_name
        ordered_by = "customer_id"
        partitions = PARTITIONS
        max_attempts = 50
        retry_base_delay = 0.02
        retry_max_delay = 0.05

        async def handle(self, msg: Step, ctx: Context) -> None:
            journal.enter(msg, self.bus.service)
            ok = False
            try:
                if msg.customer_id == stuck and msg.seq == 0 and not release.is_set():
                    raise ConnectionError("downstream refuses this customer for now")
                ok = True
            finally:
                journal.leave(msg, ok)

    async with replicas(amqp_url, Blocking, 2):
        await send_interleaved(bus, [stuck], 3)
        await send_interleaved(bus, others, 5)
        await eventually(lambda: all(journal.done[c] == list(range(5)) for c in others))
        assert journal.done[stuck] == []
        assert journal.attempts[stuck] and set(journal.attempts[stuck]) == {0}
        release.set()
        await eventually(lambda: journal.done[stuck] == [0, 1, 2])
    assert journal.overlaps == []
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


@pytest.mark.parametrize("grace", [0.0, 5.0], ids=["cancelled", "drained"])
async def test_replica_stopped_mid_stream_keeps_order(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str, cleanup: None, grace: float
) -> None:
    """A replica stopped while handling, its handlers cancelled (no grace) or finished
    (drained): its partitions go to the other replica (single active consumer) only once
    it let go of them, so no key is handled by both at once and the order holds."""
    journal = Journal()
    customers = [f"c{i}" for i in range(6)]
    worker_cls = ordered_worker(queue_name, journal, fail_first={5}, pause=0.02)
    worker_cls.shutdown_grace = grace
    async with replicas(amqp_url, worker_cls, 2) as (first, second):
        await send_interleaved(bus, customers, 10)
        await eventually(lambda: journal.total_done() >= 12)
        stopping = first if first.stats.handled else second
        await stopping.stop()  # mid-stream
        await eventually(
            lambda: all(set(journal.done[c]) == set(range(10)) for c in customers), timeout=60
        )
    for customer in customers:
        # at least once: a handler cancelled after it finished runs again (never out of order)
        steps = [s for s, _ in itertools.groupby(journal.done[customer])]
        assert steps == list(range(10)), customer
    assert journal.overlaps == []
    assert journal.replicas == {"tests.r0", "tests.r1"}
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


async def test_partitions_subscribe_again_after_a_deleted_partition_or_reopened_channel(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A partition queue deleted by an operator comes back, and a channel error that
    closes the consuming channel is followed by subscribing to every partition again:
    keys of every partition are handled afterwards."""
    journal = Journal()
    worker = await worker_factory(ordered_worker(queue_name, journal, fail_first=set()))
    keys = {partition_of(order_bucket(f"k{i}"), PARTITIONS): f"k{i}" for i in range(64)}
    assert len(keys) == PARTITIONS

    async def each_partition_handles(seq: int) -> None:
        for key in keys.values():
            with contextlib.suppress(Unroutable):  # until the deleted partition is back
                await bus.send(Step(customer_id=key, seq=seq), idempotency_key=f"{key}-{seq}")
        await asyncio.sleep(0.2)

    async def until_all(seq: int) -> None:
        while not all(seq in journal.done[key] for key in keys.values()):
            await each_partition_handles(seq)

    await asyncio.wait_for(until_all(0), 30)
    await broker_admin.delete_queues(names.partition_queue_name(queue_name, 1))
    await asyncio.wait_for(until_all(1), 30)
    consumer = worker._consumer
    assert isinstance(consumer, PartitionedSubscription)
    part = consumer._parts[0]
    assert isinstance(part, Consumer)  # the RabbitMQ port's subscription of partition 0
    raw = part._raw
    await raw.basic_ack(10**9)  # a tag never delivered: a channel error closes the channel
    await eventually(lambda: raw.is_closed, timeout=10)
    await asyncio.wait_for(until_all(2), 30)
    assert journal.overlaps == []


async def test_partitions_go_to_the_replica_of_highest_priority_on_4x(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str, cleanup: None
) -> None:
    """RabbitMQ 4.x activates the consumer of highest priority: a replica that joins later
    takes over the partitions where its priority is higher, after the current one settled,
    so order holds across the handover. (3.x keeps the first subscriber: it handles all.)"""
    journal = Journal()
    keys = {partition_of(order_bucket(f"k{i}"), PARTITIONS): f"k{i}" for i in range(64)}
    handlers: dict[tuple[str, int], set[str]] = defaultdict(set)  # (key, seq) -> replicas

    class Spread(Worker):
        queue = queue_name
        ordered_by = "customer_id"
        partitions = PARTITIONS

        async def handle(self, msg: Step, ctx: Context) -> None:
            journal.enter(msg, self.bus.service)
            handlers[(msg.customer_id, msg.seq)].add(self.bus.service)
            journal.leave(msg, ok=True)

    async def send_round(seq: int) -> None:
        for key in keys.values():
            await bus.send(Step(customer_id=key, seq=seq), idempotency_key=f"{key}-{seq}")
        await eventually(lambda: all(seq in journal.done[k] for k in keys.values()))

    async with replicas(amqp_url, Spread, 1, "tests.first") as (first,):
        await send_round(0)
        async with replicas(amqp_url, Spread, 1, "tests.joined") as (joined,):
            await send_round(1)  # the handover happens before or during this round
            await send_round(2)
            assert isinstance(first._consumer, PartitionedSubscription)
            assert isinstance(joined._consumer, PartitionedSubscription)
            mine, theirs = first._consumer.priorities, joined._consumer.priorities
    version = await broker_version(amqp_url)
    for partition, key in keys.items():
        assert handlers[(key, 0)] == {"tests.first0"}
        by_priority = "tests.first0" if mine[partition] > theirs[partition] else "tests.joined0"
        expected = by_priority if version >= (4, 0) else "tests.first0"
        assert handlers[(key, 2)] == {expected}, (partition, version)
        assert journal.done[key] == [0, 1, 2]
    assert journal.overlaps == []


async def broker_version(amqp_url: str) -> tuple[int, int]:
    """The broker's major and minor version, as it announces them."""
    connection = await aio_pika.connect(amqp_url)
    try:
        underlay = connection.transport
        assert underlay is not None
        version = str(underlay.connection.server_properties["version"])
    finally:
        await connection.close()
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


async def test_dead_lettered_message_is_replayed_into_its_partition(
    amqp_url: str,
    bus: Bus,
    worker_factory: WorkerFactory,
    broker_admin: BrokerAdmin,
    queue_name: str,
) -> None:
    """A permanent failure leaves the order (the key's next message goes on); replaying it
    once healed (`framework dlq replay Q`) routes it by its bucket back to its partition."""
    healed = False
    handled: list[tuple[str, int]] = []

    class Healing(Worker):
        queue = queue_name
        ordered_by = "customer_id"
        partitions = PARTITIONS

        async def handle(self, msg: Step, ctx: Context) -> None:
            if msg.seq == 0 and not healed:
                raise PermanentError("rejected for now")
            handled.append((msg.customer_id, msg.seq))

    worker = await worker_factory(Healing)
    dlq = names.dlq_name(queue_name)
    await bus.send(Step(customer_id="c1", seq=0))
    await bus.send(Step(customer_id="c1", seq=1))
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    await eventually(lambda: handled == [("c1", 1)])
    healed = True
    result = await cli(amqp_url, "dlq", "replay", queue_name)
    assert result.returncode == 0, result.stderr
    assert "replayed 1 message from" in result.stdout
    await broker_admin.wait_drained(worker)  # every partition empty, nothing in flight
    assert handled == [("c1", 1), ("c1", 0)]
    assert await broker_admin.depth(dlq) == 0


async def test_open_breaker_holds_the_partitions_in_order(
    bus: Bus, worker_factory: WorkerFactory, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Failures open the breaker: the failing message waits in place (deferred, its
    attempts not burned), what arrives meanwhile is held back; once the dependency is back
    every key goes on in order, each message handled once."""
    gateway_up = asyncio.Event()
    breaker = CircuitBreaker("gateway", failure_threshold=2, reset_timeout=0.5)
    journal = Journal()

    class Guarded(Worker):
        queue = queue_name
        ordered_by = "customer_id"
        partitions = PARTITIONS
        retry_base_delay = 0.05
        retry_max_delay = 0.2
        breakers = (breaker,)

        async def handle(self, msg: Step, ctx: Context) -> None:
            journal.enter(msg, self.bus.service)
            ok = False
            try:
                async with breaker:
                    if not gateway_up.is_set():
                        raise ConnectionError("gateway down")
                ok = True
            finally:
                journal.leave(msg, ok)

    worker = await worker_factory(Guarded)
    customers = ["a", "b", "c"]
    await send_interleaved(bus, customers, 2)
    await eventually(lambda: breaker.state is BreakerState.OPEN)
    await send_interleaved(bus, customers, 4)  # again 0..3: 0 and 1 are duplicates
    for seq, customer in itertools.product(range(4, 6), customers):
        await bus.send(Step(customer_id=customer, seq=seq), idempotency_key=f"{customer}-{seq}")
    assert all(journal.done[c] == [] for c in customers)
    gateway_up.set()
    await eventually(lambda: all(journal.done[c] == list(range(6)) for c in customers))
    await broker_admin.wait_drained(worker)
    assert breaker.state is BreakerState.CLOSED
    assert journal.overlaps == []
    assert all(journal.attempts[c] == sorted(journal.attempts[c]) for c in customers)
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0
