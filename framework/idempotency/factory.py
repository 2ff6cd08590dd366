"""Choose an idempotency store from a URL: `memory://` (more schemes as drivers land)."""

from __future__ import annotations

from framework.errors import ConfigurationError
from framework.idempotency.memory import MemoryStore
from framework.idempotency.store import IdempotencyStore
from framework.urls import mask_url


async def open_store(url: str) -> IdempotencyStore:
    """Open the store `url` names."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    raise ConfigurationError(
        f"unsupported idempotency store URL {mask_url(url)!r}: use memory://"
    )
