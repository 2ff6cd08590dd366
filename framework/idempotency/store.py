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
    """

    async def claim(self, scope: str, key: str, lease: float) -> ClaimResult: ...

    async def complete(self, scope: str, key: str, retention: float) -> None: ...

    async def release(self, scope: str, key: str) -> None: ...

    async def close(self) -> None: ...
