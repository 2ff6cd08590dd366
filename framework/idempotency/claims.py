"""One delivery's dealings with the idempotency store: claim, complete or release.

Every call is bounded by `timeout` (a store that stops answering fails the call, which
defers the delivery, instead of holding its prefetch slot forever), every call's success
or failure feeds `StoreHealth` (readiness), repeated identical failures are logged once per
interval with a count, and the claim's token fences the completion (see `store.py`).
"""

from __future__ import annotations

import asyncio

import structlog

from framework.idempotency.health import StoreHealth
from framework.idempotency.leases import HeldLease, LeaseKeeper, new_token
from framework.idempotency.store import ClaimResult, IdempotencyStore

_log = structlog.get_logger("framework.handling")


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
            async with asyncio.timeout(self._timeout):
                result = await self._store.claim(self._scope, self._key, self._lease, self.token)
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
            async with asyncio.timeout(self._timeout):
                recorded = await self._store.complete(
                    self._scope, self._key, self._retention, self.token
                )
        except Exception as exc:
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
            async with asyncio.timeout(self._timeout):
                await self._store.release(self._scope, self._key, self.token)
        except Exception as exc:
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
            self._health.failed(error)
            repeated = self._health.log_throttle.admit(f"{call}:{error}")
        if repeated is not None:
            _log.error(f"idempotency.{call}_failed", error=error, repeated=repeated)
        return error

    def _succeeded(self) -> None:
        if self._health is not None:
            self._health.succeeded()
