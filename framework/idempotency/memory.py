"""In-process idempotency store: the default for a single process; bounded, evicts by age."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from framework.idempotency.store import ClaimResult

Clock = Callable[[], float]


class MemoryStore:
    """Keys live in insertion order; the oldest go first when `max_keys` is reached."""

    def __init__(self, max_keys: int = 100_000, clock: Clock = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def claim(self, scope: str, key: str, lease: float) -> ClaimResult:
        now = self._clock()
        entry = self._entries.get((scope, key))
        if entry is not None and entry[1] > now:
            return ClaimResult.DONE if entry[0] else ClaimResult.BUSY
        self._put((scope, key), done=False, expires_at=now + lease)
        return ClaimResult.CLAIMED

    async def complete(self, scope: str, key: str, retention: float) -> None:
        self._put((scope, key), done=True, expires_at=self._clock() + retention)

    async def release(self, scope: str, key: str) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None and not entry[0]:
            del self._entries[(scope, key)]

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, item: tuple[str, str], *, done: bool, expires_at: float) -> None:
        self._entries.pop(item, None)
        self._entries[item] = (done, expires_at)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
