"""The protocol every idempotency store implements."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class ClaimResult(StrEnum):
    """What claiming a key found."""

    CLAIMED = "claimed"  # nobody had it: run the handler
    DONE = "done"  # already handled: skip, ack
    BUSY = "busy"  # another live worker holds the lease: retry later


class IdempotencyStore(Protocol):
    """Claim a key with a lease, mark it done with a retention, release it on failure.

    `scope` is the consuming queue: the same key takes effect once per queue.

    Fencing: a claim made with a `token` (unique per claim; the worker makes one per
    delivery) is the holder's proof. `renew` extends the lease only while the token still
    holds it, `complete` records the key done only if no one else holds or finished it in
    between (True if recorded; False otherwise, and nothing changes), `release` drops only
    that token's lease. Without a token (older callers) `complete` is unconditional and
    returns None, and `release` drops what this store instance claimed last for the key.
    """

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult: ...

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool: ...

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None: ...

    async def release(self, scope: str, key: str, token: str | None = None) -> None: ...

    async def close(self) -> None: ...
