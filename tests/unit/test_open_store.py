"""Choosing a store from a URL: schemes, SQLite paths, missing drivers, masked passwords."""

from __future__ import annotations

import sys

import pytest
from pydantic import SecretStr

from framework.errors import ConfigurationError
from framework.idempotency import MemoryStore, open_store
from framework.idempotency.factory import is_shared, sqlite_path
from framework.idempotency.sqlite import SqliteStore


async def test_memory_url_opens_memory_store() -> None:
    """memory:// is the in-process store."""
    store = await open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.close()


async def test_sqlite_memory_url_opens_sqlite_store() -> None:
    """sqlite:///:memory: opens a process-local SQLite store."""
    store = await open_store("sqlite:///:memory:")
    assert isinstance(store, SqliteStore)
    await store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/idem.db", "data/idem.db"),
        ("sqlite:////var/lib/idem.db", "/var/lib/idem.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
    ],
)
def test_sqlite_paths_follow_sqlalchemy(url: str, path: str) -> None:
    """Three slashes mean a relative path, four an absolute one."""
    assert sqlite_path(url) == path


def test_sqlite_url_with_host_is_rejected() -> None:
    """A host in a SQLite URL is a mistake, and the message shows the right forms."""
    with pytest.raises(ConfigurationError, match=r"sqlite:////absolute"):
        sqlite_path("sqlite://host/idem.db")


async def test_unknown_scheme_lists_choices_and_masks_password() -> None:
    """An unsupported scheme names the supported ones and never shows the password."""
    with pytest.raises(ConfigurationError, match="memory://, sqlite") as caught:
        await open_store("mongodb://admin:hunter2@db:27017/")
    assert "hunter2" not in str(caught.value)
    assert "admin:***@db" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("redis://:hunter2@cache:6379/0", "redis", "redis"),
        ("postgresql://app:hunter2@db/app", "asyncpg", "postgres"),
        ("postgres://app:hunter2@db/app", "asyncpg", "postgres"),
    ],
)
async def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    """Without the optional driver the error says which extra to install, password masked."""
    monkeypatch.setitem(sys.modules, module, None)
    for loaded in ("framework.idempotency.redis", "framework.idempotency.postgres"):
        monkeypatch.delitem(sys.modules, loaded, raising=False)
    with pytest.raises(ConfigurationError, match=rf"pip install 'framework\[{extra}\]'") as caught:
        await open_store(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shared"),
    [
        ("memory://", False),
        ("sqlite:///:memory:", False),
        ("sqlite:///keys.db", True),
        ("redis://localhost:6379/0", True),
        ("postgresql://u@h/db", True),
        ("nosuch://x", False),
    ],
)
def test_shared_stores_are_told_apart(url: str, shared: bool) -> None:
    """Only a store another connection sees the same way gets lease renewal from a second
    connection (and silences the memory:// warning)."""
    assert is_shared(url) is shared


async def test_settings_url_opens_as_secret() -> None:
    """open_store takes the SecretStr of Settings.idempotency_url as well as a plain str."""
    store = await open_store(SecretStr("memory://"))
    assert isinstance(store, MemoryStore)
    await store.close()
