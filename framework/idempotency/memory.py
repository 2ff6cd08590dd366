"""In-process idempotency store: the default for a single process; bounded, evicts by age.

Why it is built from arrays: a worker remembers up to `max_keys` (100,000) keys. As Python
objects (an OrderedDict of `(scope, key) -> (done, expires_at)`) a key cost ~350 bytes, so
the worker's RSS grew by ~35 MiB while a 100,000-message backlog drained. Here all memory is
allocated once, in `__init__`, in stdlib arrays: 45 to 53 bytes per key of `max_keys`
(4.5 MiB for 100,000), part of the worker's RSS from the start; it does not grow while
messages flow.

- A key is a 128-bit fingerprint of `(scope, key)` (blake2b), never the strings. 128 bits,
  not 64: a false match would make a new message look like a duplicate and drop it silently;
  with 128 bits the chance that a claim matches any of 100,000 stored keys is ~3e-34.
- Entries (fingerprint halves, expiry, done flag, lease token: 29 bytes) sit in fixed arrays of
  `max_keys + 2` and never move; index 0 is the age list's sentinel, free entries are
  chained through `next`.
- The hash table holds only int32 entry indices (0: empty), a power of two of at least twice
  the entries, so it is at most half full. Linear probing from the fingerprint's low bits;
  deletion shifts the rest of the probe chain back (no tombstones, so chains never degrade).
  Only these 4-byte indices move, the entries do not.
- Age is a doubly linked list through the entries (`prev`/`next`, int32): claim and complete
  move the key to the newest end; the oldest is evicted when there are more than `max_keys`.
  Every step is O(1), not amortised, and nothing stale piles up (as it would in an
  insertion-order ring that every refresh appends to).
- Expired keys count as absent but stay until refreshed, released or evicted, as before.
- A claim's token (see `IdempotencyStore`) is kept as 32 bits of its hash (0: claimed
  without a token). Tokens are only compared within this process, between the claims of one
  key, so a false match (2**-32 per takeover) is what fencing risks here, not a lost key.
"""

from __future__ import annotations

import struct
import time
from array import array
from collections.abc import Callable
from hashlib import blake2b

from framework.idempotency.store import ClaimResult

Clock = Callable[[], float]
#: (scope, key) -> its fingerprint as two unsigned 64-bit halves
Fingerprint = Callable[[str, str], tuple[int, int]]

_two_u64 = struct.Struct("<QQ").unpack
_U32 = (1 << 32) - 1


def _token_bits(token: str | None) -> int:
    """A token as the 32 bits the store keeps; 0 stands for "claimed without a token"."""
    if token is None:
        return 0
    return (hash(token) & _U32) or 1


def blake2b_fingerprint(scope: str, key: str) -> tuple[int, int]:
    """128 bits of blake2b over an unambiguous encoding of `(scope, key)`."""
    data = f"{len(scope)}:{scope}{key}".encode("utf-8", "surrogatepass")
    hi, lo = _two_u64(blake2b(data, digest_size=16).digest())
    return hi, lo


class MemoryStore:
    """Keys live in age order (by last claim or complete); the oldest go first beyond `max_keys`.

    `fingerprint` is for tests (to force collisions); keep the default otherwise.
    """

    def __init__(
        self,
        max_keys: int = 100_000,
        clock: Clock = time.monotonic,
        *,
        fingerprint: Fingerprint = blake2b_fingerprint,
    ) -> None:
        if max_keys < 0:
            raise ValueError(f"max_keys must be >= 0, not {max_keys}")
        entries = max_keys + 2  # the sentinel, max_keys, one more between insert and evict
        slots = 2
        while slots < 2 * entries:
            slots *= 2
        self._max_keys = max_keys
        self._clock = clock
        self._fingerprint = fingerprint
        self._mask = slots - 1
        self._hi = array("Q", [0]) * entries
        self._lo = array("Q", [0]) * entries
        self._expires = array("d", [0.0]) * entries
        self._done = array("B", [0]) * entries
        self._token = array("I", [0]) * entries
        self._prev = array("i", [0]) * entries
        self._forget_all()  # allocates `_table` (slot -> entry, 0 = empty) and `_next`

    async def claim(
        self, scope: str, key: str, lease: float, token: str | None = None
    ) -> ClaimResult:
        now = self._clock()
        hi, lo = self._fingerprint(scope, key)
        slot = self._find(hi, lo)
        if slot >= 0:
            entry = self._table[slot]
            if self._expires[entry] > now:
                return ClaimResult.DONE if self._done[entry] else ClaimResult.BUSY
        self._put(hi, lo, slot, False, now + lease, _token_bits(token))
        return ClaimResult.CLAIMED

    async def renew(self, scope: str, key: str, lease: float, token: str) -> bool:
        hi, lo = self._fingerprint(scope, key)
        slot = self._find(hi, lo)
        if slot < 0:
            return False
        entry = self._table[slot]
        if self._done[entry] or self._token[entry] != _token_bits(token):
            return False
        self._put(hi, lo, slot, False, self._clock() + lease, self._token[entry])
        return True

    async def complete(
        self, scope: str, key: str, retention: float, token: str | None = None
    ) -> bool | None:
        now = self._clock()
        hi, lo = self._fingerprint(scope, key)
        slot = self._find(hi, lo)
        if token is not None and slot >= 0:
            entry = self._table[slot]
            held_by_other = self._done[entry] or self._token[entry] != _token_bits(token)
            if held_by_other and self._expires[entry] > now:
                return False  # fenced: another claim took over (or finished) meanwhile
        self._put(hi, lo, slot, True, now + retention, 0)
        return None if token is None else True

    async def release(self, scope: str, key: str, token: str | None = None) -> None:
        slot = self._find(*self._fingerprint(scope, key))
        if slot < 0:
            return
        entry = self._table[slot]
        if not self._done[entry] and (token is None or self._token[entry] == _token_bits(token)):
            self._delete(slot)

    async def close(self) -> None:
        self._forget_all()

    def __len__(self) -> int:
        return self._count

    def _forget_all(self) -> None:
        self._table = array("i", [0]) * (self._mask + 1)
        self._next = array("i", range(1, len(self._prev) + 1))  # free list: 1 -> 2 -> ...
        self._next[0] = self._prev[0] = 0  # the age list: only its sentinel
        self._free = 1
        self._count = 0

    def _find(self, hi: int, lo: int) -> int:
        """The slot holding the fingerprint, or `~slot` of the empty slot ending its chain."""
        table, his, los, mask = self._table, self._hi, self._lo, self._mask
        slot = hi & mask
        while entry := table[slot]:
            if his[entry] == hi and los[entry] == lo:
                return slot
            slot = (slot + 1) & mask
        return ~slot

    def _put(self, hi: int, lo: int, slot: int, done: bool, expires_at: float, token: int) -> None:
        """Store the key as the newest, at `slot` (a `_find` result); evict beyond max_keys."""
        prev, next_ = self._prev, self._next
        if slot >= 0:  # known: unlink it from its place in the age order
            entry = self._table[slot]
            next_[prev[entry]] = next_[entry]
            prev[next_[entry]] = prev[entry]
        else:  # new: take a free entry
            entry = self._free
            self._free = next_[entry]
            self._table[~slot] = entry
            self._hi[entry] = hi
            self._lo[entry] = lo
            self._count += 1
        self._done[entry] = done
        self._expires[entry] = expires_at
        self._token[entry] = token
        newest = prev[0]
        next_[newest] = entry
        prev[entry] = newest
        next_[entry] = 0
        prev[0] = entry
        if self._count > self._max_keys:
            oldest = next_[0]
            self._delete(self._find(self._hi[oldest], self._lo[oldest]))

    def _delete(self, slot: int) -> None:
        """Free the entry at `slot`; shift the rest of its probe chain back over the hole."""
        table, his, mask, prev, next_ = self._table, self._hi, self._mask, self._prev, self._next
        entry = table[slot]
        next_[prev[entry]] = next_[entry]
        prev[next_[entry]] = prev[entry]
        next_[entry] = self._free
        self._free = entry
        self._count -= 1
        hole = slot
        slot = (slot + 1) & mask
        while entry := table[slot]:
            # the entry may fill the hole unless its home slot lies cyclically in (hole, slot]
            if (slot - (his[entry] & mask)) & mask >= (slot - hole) & mask:
                table[hole] = entry
                hole = slot
            slot = (slot + 1) & mask
        table[hole] = 0
