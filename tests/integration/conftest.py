"""Idempotency store fixtures: every store the framework ships, against the real services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from framework import Bus
from framework.idempotency import IdempotencyStore, MemoryStore, open_store

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORE_KINDS = ["memory", "sqlite", "redis", "postgres"]


StoreUrl = Callable[[str], str]


@pytest.fixture
def store_url(tmp_path: Path) -> StoreUrl:
    """The URL of a store of a kind; SQLite lives in this test's tmp dir."""
    urls = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'idempotency.db'}",
        "redis": REDIS_URL,
        "postgres": POSTGRES_URL,
    }
    return urls.__getitem__


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each idempotency store kind in turn."""
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, store_url: StoreUrl) -> AsyncIterator[IdempotencyStore]:
    """An open store of `store_kind`, closed after the test."""
    opened = await open_store(store_url(store_kind))
    yield opened
    await opened.close()


@pytest.fixture
async def store_bus(amqp_url: str, store_kind: str, store_url: StoreUrl) -> AsyncIterator[Bus]:
    """A Bus whose idempotency store is `store_kind`, given as a URL (the Bus opens it)."""
    async with Bus.connect(amqp_url, service="tests", idempotency=store_url(store_kind)) as bus:
        yield bus


@pytest.fixture
async def bus_pair(
    amqp_url: str, store_kind: str, store_url: StoreUrl
) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two Buses (replicas) sharing one store: by URL, or one object for memory."""
    shared = MemoryStore() if store_kind == "memory" else None
    store: IdempotencyStore | str = store_url(store_kind) if shared is None else shared
    async with (
        Bus.connect(amqp_url, service="tests.a", idempotency=store) as first,
        Bus.connect(amqp_url, service="tests.b", idempotency=store) as second,
    ):
        yield first, second
    if shared is not None:
        await shared.close()
