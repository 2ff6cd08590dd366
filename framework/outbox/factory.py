"""Open the service's database from a URL: `sqlite:///path.db` or `postgresql://...`."""

from __future__ import annotations

from framework.errors import ConfigurationError
from framework.idempotency.factory import sqlite_path
from framework.outbox.database import Database
from framework.wire.urls import mask_url


async def open_database(url: str, *, busy_timeout: float = 5.0, pool_size: int = 10) -> Database:
    """Open the database `url` names and create the inbox and outbox tables if missing.

    `pool_size` bounds PostgreSQL connections (= concurrent transactions); `busy_timeout` is
    how long a statement waits for a lock or a connection. Raises `DatabaseUnavailable` if
    it cannot be reached, `ConfigurationError` for a URL naming no supported database.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from framework.outbox.sqlite import SqliteDatabase

        return await SqliteDatabase.open(sqlite_path(url), busy_timeout=busy_timeout)
    if scheme in ("postgresql", "postgres"):
        try:
            from framework.outbox.postgres import PostgresDatabase
        except ImportError as exc:
            raise ConfigurationError(
                f"database {mask_url(url)!r} needs the 'asyncpg' driver: "
                "pip install 'framework[postgres]'"
            ) from exc
        return await PostgresDatabase.open(url, max_size=pool_size, acquire_timeout=busy_timeout)
    raise ConfigurationError(
        f"unsupported database URL {mask_url(url)!r}: use sqlite:///path.db or "
        "postgresql://user@host/db"
    )
