"""One driver per bus for the shared behavioural suite (test_bus_contract.py).

Both expose the same few verbs, so every contract test runs unchanged on the in-memory bus
and on RabbitMQ: start a worker, wait until it has nothing left to do, read a DLQ, inject
raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from framework import Bus, Worker
from framework.testing import BrokerAdmin, MemoryBus
from framework.wire import names

W = TypeVar("W", bound=Worker)


class DeadMessage(Protocol):
    """A dead-lettered message as either bus shows it (read-only)."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...


class Harness(Protocol):
    @property
    def bus(self) -> Bus | MemoryBus: ...

    async def start(self, worker_cls: type[W]) -> W: ...

    async def settle(self, *workers: Worker) -> None: ...

    async def dead_letters(self, queue: str, expected: int) -> list[DeadMessage]: ...

    async def inject(self, queue: str, body: bytes, **properties: Any) -> None: ...


@dataclass
class MemoryHarness:
    bus: MemoryBus

    async def start(self, worker_cls: type[W]) -> W:
        return await self.bus.start_worker(worker_cls)

    async def settle(self, *workers: Worker) -> None:
        await self.bus.drain()

    async def dead_letters(self, queue: str, expected: int) -> list[DeadMessage]:
        await self.bus.drain()
        return list(self.bus.dead_letters(queue))

    async def inject(self, queue: str, body: bytes, **properties: Any) -> None:
        await self.bus.publish_raw(queue, body, **properties)


@dataclass
class RabbitHarness:
    bus: Bus
    admin: BrokerAdmin
    running: list[tuple[Worker, asyncio.Task[None]]] = field(default_factory=list)

    async def start(self, worker_cls: type[W]) -> W:
        worker = worker_cls(self.bus)
        task = asyncio.create_task(worker.run())
        self.running.append((worker, task))
        await worker.wait_ready()
        return worker

    async def settle(self, *workers: Worker) -> None:
        for worker in workers:
            await self.admin.wait_drained(worker, timeout=20)

    async def dead_letters(self, queue: str, expected: int) -> list[DeadMessage]:
        await self.admin.wait_for_depth(names.dlq_name(queue), expected, timeout=20)
        return list(await self.admin.drain(names.dlq_name(queue)))

    async def inject(self, queue: str, body: bytes, **properties: Any) -> None:
        await self.admin.publish_raw(queue, body, **properties)

    async def close(self) -> None:
        for worker, task in reversed(self.running):
            await worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker, _ in self.running:
            await self.admin.delete_worker_queues(worker.spec.queue, worker.spec.policy.tiers_ms())


@dataclass
class PortSpy:
    """Wraps a bus's broker port and records what crosses it: what proves that everything
    above the port (the Bus's publishing, the Worker's consume, settle and ack code) is the
    same code on both buses. Every call is passed on unchanged."""

    inner: Any
    published: list[tuple[str, str, str]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    ackers: list[Any] = field(default_factory=list)

    async def open(self, on_reconnect: Any) -> None:
        await self.inner.open(on_reconnect)

    async def close(self) -> None:
        await self.inner.close()

    async def declare(self, topology: Any) -> None:
        await self.inner.declare(topology)

    async def check_worker(self, spec: Any, worker_name: str, log: Any) -> None:
        await self.inner.check_worker(spec, worker_name, log)

    async def publish(self, envelope: Any, exchange: str, routing_key: str, **kw: Any) -> None:
        self.published.append((exchange, routing_key, envelope.message_id))
        await self.inner.publish(envelope, exchange, routing_key, **kw)

    async def request(self, envelope: Any, routing_key: str, **kw: Any) -> Any:
        self.requested.append(routing_key)
        return await self.inner.request(envelope, routing_key, **kw)

    async def subscribe(self, queue: Any, prefetch: int, on_delivery: Any, **kw: Any) -> Any:
        self.subscribed.append(queue.name)
        return await self.inner.subscribe(queue, prefetch, on_delivery, **kw)

    def acker(self, **kw: Any) -> Any:
        acker = self.inner.acker(**kw)
        self.ackers.append(acker)
        return acker

    async def consumer_count(self, queue: str) -> int | None:
        result: int | None = await self.inner.consumer_count(queue)
        return result

    async def ready_count(self, queue: str) -> int:
        result: int = await self.inner.ready_count(queue)
        return result

    async def follow(self, exchange: str, queue: str, on_body: Any) -> Any:
        return await self.inner.follow(exchange, queue, on_body)
