"""Choose an idempotency store from a URL.

- `memory://`: in-process (the default; one process only)
- `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (SQLAlchemy's convention),
  `sqlite:///:memory:`: embedded, survives restarts
- `redis://...`, `rediss://...`: shared; needs `pip install 'framework[redis]'`
- `postgresql://...`, `postgres://...`: shared; needs `pip install 'framework[postgres]'`
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from framework.errors import ConfigurationError, StoreUnavailable
from framework.idempotency.memory import MemoryStore
from framework.idempotency.store import IdempotencyStore
from framework.wire.urls import mask_text, mask_url

SCHEMES = "memory://, sqlite:///path, redis://, postgresql://"


async def open_store(url: str | SecretStr, *, timeout: float | None = None) -> IdempotencyStore:
    """Open the store `url` names; errors name the URL with its password masked.

    `timeout` bounds the network stores' connects and calls (driver-level timeouts).
    """
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise ConfigurationError(
            f"unsupported idempotency store URL {mask_url(url)!r}: use one of {SCHEMES}"
        )
    try:
        return await opener(url, timeout)
    except (ConfigurationError, StoreUnavailable):
        raise
    except Exception as exc:
        raise StoreUnavailable(
            f"cannot open idempotency store {mask_url(url)}: "
            f"{type(exc).__name__}: {mask_text(str(exc))}"
        ) from exc


async def _memory(url: str, timeout: float | None) -> IdempotencyStore:
    return MemoryStore()


async def _sqlite(url: str, timeout: float | None) -> IdempotencyStore:
    from framework.idempotency.sqlite import SqliteStore

    return await SqliteStore.open(sqlite_path(url))


async def _redis(url: str, timeout: float | None) -> IdempotencyStore:
    try:
        from framework.idempotency.redis import RedisStore
    except ImportError as exc:
        _raise_missing_driver(exc, "redis", url)
    return await RedisStore.open(url, timeout=timeout)


async def _postgres(url: str, timeout: float | None) -> IdempotencyStore:
    try:
        from framework.idempotency.postgres import PostgresStore
    except ImportError as exc:
        _raise_missing_driver(exc, "asyncpg", url)
    return await PostgresStore.open(url, timeout=timeout)


_OPENERS: dict[str, Callable[[str, float | None], Awaitable[IdempotencyStore]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}
_EXTRAS = {"redis": "redis", "asyncpg": "postgres"}


def is_shared(url: str) -> bool:
    """Whether another process (or connection) opening `url` sees the same keys: not for
    `memory://` nor an in-memory SQLite database."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return False
    if scheme == "sqlite":
        return sqlite_path(url) != ":memory:"
    return scheme in _OPENERS


def sqlite_path(url: str) -> str:
    """The file a `sqlite://` URL names: `sqlite:///a.db` is relative, `sqlite:////a.db` not."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {mask_url(url)!r} has a host: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    return path or ":memory:"


def _raise_missing_driver(exc: ImportError, module: str, url: str) -> NoReturn:
    if exc.name is None or exc.name.split(".")[0] != module:
        raise exc
    raise ConfigurationError(
        f"idempotency store {mask_url(url)!r} needs the {module!r} driver: "
        f"pip install 'framework[{_EXTRAS[module]}]'"
    ) from exc
