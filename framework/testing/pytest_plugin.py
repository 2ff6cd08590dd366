"""pytest plugin (entry point `framework`): broker URL, bus, admin and worker fixtures.

`test_bus` is the in-memory bus (no broker needed); `bus`, `broker_admin`, `worker_factory`
and `wait_drained` talk to the RabbitMQ at `amqp_url`. The async fixtures are declared with
`pytest_asyncio.fixture`, so they work in pytest-asyncio's default strict mode as well as in
auto mode (in strict mode, mark the tests `@pytest.mark.asyncio`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

import pytest

from framework.bus import Bus
from framework.testing.broker import BrokerAdmin, amqp_url_from_env_or_container
from framework.testing.memory_bus import MemoryBus
from framework.worker import Worker

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio no async fixture runs anyway
    async_fixture = pytest.fixture  # type: ignore[assignment]  # pytest names what is missing

W = TypeVar("W", bound=Worker)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The broker for this test session: `AMQP_URL`, else RabbitMQ on localhost, else a
    testcontainers RabbitMQ (Docker), else an error naming those three options."""
    with amqp_url_from_env_or_container() as url:
        yield url


@async_fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A connected Bus with an in-memory idempotency store, closed after the test."""
    async with Bus.connect(amqp_url, service="tests") as connected:
        yield connected


@async_fixture
async def broker_admin(amqp_url: str) -> AsyncIterator[BrokerAdmin]:
    """Raw broker helpers (depth, raw publish, drain, delete)."""
    async with BrokerAdmin.connect(amqp_url) as admin:
        yield admin


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name unique to this test, so tests never see each other's messages."""
    # AMQP queue names allow only letters, digits and -_.: (parametrised ids add [...])
    readable = re.sub(r"[^A-Za-z0-9_.:-]", "-", request.node.name)[:40]
    return f"t.{readable}.{uuid.uuid4().hex[:8]}"


class WorkerFactory(Protocol):
    """The `worker_factory` fixture: start a worker of `worker_cls` (on `on_bus`, else the
    test's bus) and return it once it consumes; it is stopped when the test ends."""

    def __call__(self, worker_cls: type[W], on_bus: Bus | None = None) -> Awaitable[W]: ...


@async_fixture
async def worker_factory(bus: Bus, broker_admin: BrokerAdmin) -> AsyncIterator[WorkerFactory]:
    """Start workers that run until the test ends; stop them cleanly and delete their queues."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(worker_cls: type[W], on_bus: Bus | None = None) -> W:
        worker = worker_cls(on_bus or bus)
        task = asyncio.create_task(worker.run(), name=f"worker:{worker_cls.__name__}")
        running.append((worker, task))
        await worker.wait_ready()
        return worker

    yield start
    for worker, task in reversed(running):
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for worker, _ in running:  # its queue (or partitions), DLQ and delay tiers
        await broker_admin.delete_queues(*(q.name for q in worker.spec.topology.queues))


@async_fixture(name="test_bus")
async def memory_bus() -> AsyncIterator[MemoryBus]:
    """An in-memory bus (same API and semantics as `bus`, no broker); closed after the test.

    Start workers with `await test_bus.start_worker(MyWorker)`, then `await test_bus.drain()`.
    """
    async with MemoryBus(service="tests") as connected:
        yield connected


WaitDrained = Callable[..., Awaitable[None]]


@pytest.fixture
def wait_drained(broker_admin: BrokerAdmin) -> WaitDrained:
    """`await wait_drained(worker, timeout=30)`: until the worker's queues are empty and idle."""
    return broker_admin.wait_drained
