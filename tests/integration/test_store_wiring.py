"""Choosing a Bus's idempotency store: by argument, by environment, and who closes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework import Bus, ConfigurationError, Settings
from framework.idempotency import MemoryStore
from framework.idempotency.redis import RedisStore
from framework.idempotency.sqlite import SqliteStore


async def test_default_store_is_memory(amqp_url: str) -> None:
    """Without a setting the Bus uses the in-process store."""
    async with Bus.connect(amqp_url, settings=Settings()) as bus:
        assert isinstance(bus.idempotency, MemoryStore)


async def test_store_url_from_environment(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FRAMEWORK_IDEMPOTENCY_URL picks the store the Bus opens."""
    monkeypatch.setenv("FRAMEWORK_IDEMPOTENCY_URL", f"sqlite:///{tmp_path / 'idem.db'}")
    async with Bus.connect(amqp_url, settings=Settings()) as bus:
        assert isinstance(bus.idempotency, SqliteStore)
    assert (tmp_path / "idem.db").exists()


async def test_store_url_argument(amqp_url: str) -> None:
    """Bus(idempotency="redis://...") opens that store."""
    async with Bus.connect(amqp_url, idempotency="redis://127.0.0.1:6379/0") as bus:
        assert isinstance(bus.idempotency, RedisStore)


async def test_bus_closes_store_it_opened(amqp_url: str, tmp_path: Path) -> None:
    """A store the Bus opened from a URL is closed with the Bus."""
    async with Bus.connect(amqp_url, idempotency=f"sqlite:///{tmp_path / 'i.db'}") as bus:
        store = bus.idempotency
    with pytest.raises(RuntimeError):
        await store.claim("q", "k", 1.0)


async def test_bus_leaves_given_store_open(amqp_url: str) -> None:
    """A store object passed in belongs to the caller; the Bus does not close it."""
    store = await SqliteStore.open(":memory:")
    async with Bus.connect(amqp_url, idempotency=store):
        pass
    assert await store.claim("q", "k", 1.0) == "claimed"
    await store.close()


async def test_bad_store_url_fails_start_without_password(amqp_url: str) -> None:
    """An unsupported store URL stops the Bus from starting, with the password masked."""
    with pytest.raises(ConfigurationError, match="unsupported idempotency store") as caught:
        async with Bus.connect(amqp_url, idempotency="mongodb://u:hunter2@db/"):
            pass
    assert "hunter2" not in str(caught.value)
