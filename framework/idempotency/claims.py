"""One delivery's dealings with the idempotency store: claim, complete or release.

Every call is bounded by `timeout` (a store that stops answering fails the call, which
defers the delivery, instead of holding its prefetch slot forever), every call's success
or failure feeds `StoreHealth` (readiness), repeated identical failures are logged once per
interval with a count, and the claim's token fences the completion (see `store.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import structlog

from framework.idempotency.health import StoreHealth
from framework.idempotency.leases import HeldLease, LeaseKeeper, new_token
from framework.idempotency.store import ClaimResult, IdempotencyStore

_log = structlog.get_logger("framework.handling")
_T = TypeVar("_T")


async def within(timeout: float, call: Coroutine[Any, Any, _T]) -> _T:
    """Await `call` bounded by `timeout` s. A call that finishes without suspending (the
    in-process store always does) sets no timer: a timer per call was most of that store's
    cost per message."""
    try:
        pending = call.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    try:
        async with asyncio.timeout(timeout):
            finished: _T = await _Resumed(call, pending)
            return finished
    finally:
        call.close()  # no-op once it has finished; stops it if the timeout setup failed


class _Resumed:
    """Awaits the rest of a coroutine already started (by `within`) up to its first wait."""

    __slots__ = ("_call", "_pending")

    def __init__(self, call: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._call = call
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        call, pending = self._call, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # noqa: BLE001 - the timeout's cancel goes into the call
                try:
                    pending = call.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = call.send(sent)
                except StopIteration as done:
                    return done.value


class DeliveryClaim:
    """The claim of one delivery's key, made with a token of its own."""

    __slots__ = (
        "_health",
        "_held",
        "_key",
        "_lease",
        "_leases",
        "_retention",
        "_scope",
        "_store",
        "_timeout",
        "token",
    )

    def __init__(
        self,
        store: IdempotencyStore,
        scope: str,
        key: str,
        lease: float,
        retention: float,
        timeout: float,
        leases: LeaseKeeper | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self._store = store
        self._scope = scope
        self._key = key
        self._lease = lease
        self._retention = retention
        self._timeout = timeout
        self._leases = leases
        self._health = health
        self.token = new_token()
        self._held: HeldLease | None = None

    async def claim(self) -> ClaimResult:
        """Claim the key (raises if the store fails or does not answer in time).

        If the answer is lost, the store may have taken the claim anyway: it is handed to
        `leases` to be released (with this token) once the store answers, so the key is not
        blocked until the lease expires.
        """
        try:
            result = await within(
                self._timeout, self._store.claim(self._scope, self._key, self._lease, self.token)
            )
        except Exception:
            if self._leases is not None:
                self._leases.orphan(self._scope, self._key, self.token)
            raise
        self._succeeded()
        return result

    def hold(self) -> HeldLease:
        """The claimed lease, renewed by `leases` until `unhold()`."""
        held = self._held = HeldLease(self._scope, self._key, self.token, self._lease)
        if self._leases is not None:
            self._leases.hold(held)
        return held

    def unhold(self) -> None:
        if self._leases is not None and self._held is not None:
            self._leases.drop(self._held)

    async def complete(self) -> bool:
        """Mark the key done; False if refused (fenced) or the store failed (logged, not
        raised: the effect happened, so the delivery is acked anyway)."""
        try:
            recorded = await within(
                self._timeout,
                self._store.complete(self._scope, self._key, self._retention, self.token),
            )
        except Exception as exc:  # noqa: BLE001 - logged; the lease expires
            # A later duplicate may run again once the lease expires; logged to be traced.
            self.failure("complete", exc)
            return False
        self._succeeded()
        if not recorded:
            if self._health is not None:
                self._health.fenced += 1
            _log.error(
                "idempotency.fenced",
                hint="this delivery's lease was taken over by another worker (it "
                "expired: event loop blocked or store unreachable past the "
                "lease?); its completion was refused, the other's state kept",
            )
        return bool(recorded)

    async def release(self) -> None:
        """Release the claim; if the store is down the lease simply expires later."""
        try:
            await within(self._timeout, self._store.release(self._scope, self._key, self.token))
        except Exception as exc:  # noqa: BLE001 - store down: the lease expires later
            self.failure("release", exc)
            return
        self._succeeded()

    def failure(self, call: str, exc: Exception) -> str:
        """Note a failed store call (logged once per interval per error); its description."""
        if isinstance(exc, TimeoutError):
            error = f"idempotency store did not answer within {self._timeout:g}s"
        else:
            text = str(exc)
            detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            error = f"idempotency store unavailable: {detail}"
        repeated: int | None = 0
        if self._health is not None:
            self._health.failed()
            repeated = self._health.log_throttle.admit(f"{call}:{error}")
        if repeated is not None:
            _log.error(f"idempotency.{call}_failed", error=error, repeated=repeated)
        return error

    def _succeeded(self) -> None:
        if self._health is not None:
            self._health.succeeded()
