"""Holding a delivery's claim while its work runs: lease tokens, renewal, tracked threads.

A claim is made with a token unique to the delivery (`new_token`); the store checks it on
renew, complete and release (fencing). While the handler runs, a `LeaseKeeper` renews every
held lease each `interval` s. With a shared store it renews from a thread of its own, with
its own event loop and store connection, so a handler that blocks the worker's event loop
does not let the lease lapse while the process is alive (another worker would claim the key
and run it a second time).

A timeout cancels the handler's coroutine, but not a thread it started: work handed to
`asyncio.to_thread` or `loop.run_in_executor(None, ...)` runs on. The worker installs a
`TrackingExecutor` as its loop's default executor: it records each thread started on
behalf of a delivery (found through a context variable that `asyncio.to_thread` and
`run_in_executor` copy), so the worker keeps that delivery's lease until its threads end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import structlog

from framework.idempotency.store import IdempotencyStore

_PROCESS = secrets.token_hex(8)
_serial = itertools.count(1)
_log = structlog.get_logger("framework.idempotency")

Opener = Callable[[], Awaitable[IdempotencyStore]]
MAX_ORPHANS = 10_000  # claims with a lost answer kept for release, at most


def new_token() -> str:
    """A lease token unique across processes: this process's random prefix and a serial."""
    return f"{_PROCESS}-{next(_serial)}"


class HeldLease:
    """One delivery's claim: what to renew, and the threads started on its behalf."""

    __slots__ = ("_threads", "key", "lease", "lost", "renewed_at", "scope", "token")

    def __init__(self, scope: str, key: str, token: str, lease: float) -> None:
        self.scope = scope
        self.key = key
        self.token = token
        self.lease = lease
        self.lost = False  # a renewal found the lease taken over (or the key done)
        # monotonic time of the claim or its last renewal (set by whichever thread renewed:
        # a float assignment, atomic); what `LeaseKeeper.renew_if_due` reads
        self.renewed_at = time.monotonic()
        self._threads: list[concurrent.futures.Future[Any]] | None = None

    def track(self, future: concurrent.futures.Future[Any]) -> None:
        """Remember a thread's future (called from `TrackingExecutor.submit`)."""
        if self._threads is None:
            self._threads = []
        self._threads.append(future)

    def threads_running(self) -> bool:
        """Whether a thread started for this delivery has not finished yet."""
        return self._threads is not None and not all(f.done() for f in self._threads)

    async def threads_finished(self) -> bool:
        """Wait until every tracked thread has ended; True if all returned without raising."""
        threads = self._threads or []
        if threads:
            await asyncio.wait([asyncio.wrap_future(f) for f in threads])
        return all(not f.cancelled() and f.exception() is None for f in threads)


current_lease: ContextVar[HeldLease | None] = ContextVar("fw_current_lease", default=None)


class TrackingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The default executor of a worker's loop: records threads per delivery (see module)."""

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        held = current_lease.get()
        if held is not None:
            held.track(future)
        return future


def install_tracking_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Make `loop`'s default executor a `TrackingExecutor` (once per loop)."""
    if loop in _tracked_loops:
        return
    loop.set_default_executor(TrackingExecutor(thread_name_prefix="fw-handler"))
    _tracked_loops.add(loop)


# Loops already given a TrackingExecutor: a weak set, so it never keeps a loop alive.
_tracked_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def renewal_due(renewed_at: float, interval: float, now: float) -> bool:
    """Whether a lease last renewed at `renewed_at` (monotonic s) is due for renewal."""
    return now - renewed_at >= interval


class LeaseKeeper:
    """Renews the leases it holds every `interval` s until its `run()` task is cancelled.

    With `opener` (how to open another connection to the same shared store) renewals run
    on a thread of their own; without one (the in-process store) on the caller's loop.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        interval: float,
        *,
        opener: Opener | None = None,
        call_timeout: float = 5.0,
    ) -> None:
        self._store = store
        self._interval = interval
        self._opener = opener
        self._call_timeout = call_timeout
        self._held: dict[str, HeldLease] = {}
        # claims whose answer was lost (timeout, connection reset): the store may have taken
        # them, so they are released with their token (never anyone else's) once it answers
        self._orphans: dict[str, tuple[str, str]] = {}

    def orphan(self, scope: str, key: str, token: str) -> None:
        """Release a claim whose outcome is unknown, on the next round (bounded: oldest go)."""
        if len(self._orphans) >= MAX_ORPHANS:
            self._orphans.pop(next(iter(self._orphans)))
        self._orphans[token] = (scope, key)

    def hold(self, lease: HeldLease) -> None:
        self._held[lease.token] = lease

    def drop(self, lease: HeldLease) -> None:
        self._held.pop(lease.token, None)

    def __len__(self) -> int:
        return len(self._held)

    async def renew_if_due(self, store: IdempotencyStore, lease: HeldLease) -> bool:
        """Renew `lease` now on `store` if its last renewal is an interval old or more (the
        renewing thread is behind: store slow, renewals failing); a handler's
        `ctx.heartbeat()` calls it. Returns False once the lease is lost (another worker
        holds the key), True otherwise (a failed call is logged and retried next round)."""
        if not lease.lost and renewal_due(lease.renewed_at, self._interval, time.monotonic()):
            await self._renew(store, lease)
        return not lease.lost

    async def run(self) -> None:
        """Renew until cancelled (then the renewing thread, if any, is stopped and joined)."""
        if self._opener is None:
            await self._renew_forever(self._store)
            return
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(
            target=self._serve, args=(loop, self._opener, stop), name="fw-leases", daemon=True
        )
        thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            loop.call_soon_threadsafe(stop.set)
            await asyncio.to_thread(thread.join)

    def _serve(self, loop: asyncio.AbstractEventLoop, opener: Opener, stop: asyncio.Event) -> None:
        """The renewing thread: its own loop and store until `stop` is set."""
        try:
            loop.run_until_complete(self._renew_in_thread(opener, stop))
        finally:
            loop.close()

    async def _renew_in_thread(self, opener: Opener, stop: asyncio.Event) -> None:
        store: IdempotencyStore | None = None
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)
                    return
                if store is None:
                    try:
                        store = await asyncio.wait_for(opener(), self._call_timeout)
                    except Exception as exc:  # noqa: BLE001 - store away: tried next round
                        _log.warning("idempotency.renewal_store_unavailable", error=repr(exc))
                        continue
                await self._renew_all(store)
        finally:
            if store is not None:  # bounded: a stalled server must not hold up the shutdown
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(store.close(), self._call_timeout)

    async def _renew_forever(self, store: IdempotencyStore) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._renew_all(store)

    async def _renew_all(self, store: IdempotencyStore) -> None:
        held = [lease for lease in self._held.copy().values() if not lease.lost]
        orphans = list(self._orphans.copy().items())
        if held or orphans:
            await asyncio.gather(
                *(self._renew(store, lease) for lease in held),
                *(self._release(store, token, *at) for token, at in orphans),
            )

    async def _release(self, store: IdempotencyStore, token: str, scope: str, key: str) -> None:
        try:
            async with asyncio.timeout(self._call_timeout):
                await store.release(scope, key, token)
        except Exception:  # noqa: BLE001 - still unavailable: next round
            return
        self._orphans.pop(token, None)

    async def _renew(self, store: IdempotencyStore, lease: HeldLease) -> None:
        try:
            async with asyncio.timeout(self._call_timeout):
                renewed = await store.renew(lease.scope, lease.key, lease.lease, lease.token)
        except Exception as exc:  # noqa: BLE001 - the store is away: try again next interval
            _log.warning(
                "idempotency.renew_failed", queue=lease.scope, message_id=lease.key, error=repr(exc)
            )
            return
        if renewed:
            lease.renewed_at = time.monotonic()
        elif lease.token in self._held:
            lease.lost = True
            _log.error(
                "idempotency.lease_lost",
                queue=lease.scope,
                message_id=lease.key,
                hint="another worker claimed the key after this lease expired "
                "(event loop blocked or store unreachable past the lease?)",
            )
