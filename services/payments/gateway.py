"""A simulated external payment gateway: latency, random failures, "429 retry after"
answers, declines, an outage.

`verdict` is the pure rule (time since start and two random draws in, verdict out);
`Gateway.charge` adds the latency and raises for failures. Declines are normal answers.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """How the simulated gateway misbehaves (env prefix PAYMENTS_GATEWAY_)."""

    model_config = SettingsConfigDict(env_prefix="PAYMENTS_GATEWAY_", extra="ignore")

    latency: float = 0.02  # seconds per call (jittered +-50%)
    failure_rate: float = 0.2  # share of calls failing transiently (connection reset, 503)
    throttle_rate: float = 0.0  # share of calls answered "429, Retry-After: retry_after"
    retry_after: float = 0.5  # seconds the gateway asks a throttled caller to wait
    decline_rate: float = 0.05  # share of charges declined (a business outcome)
    outage_start: float = 3.0  # seconds after start when the outage begins
    outage_duration: float = 3.0  # seconds the gateway hangs on every call (0: no outage)
    timeout: float = 0.5  # our bound on one call


class Verdict(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    THROTTLED = "throttled"
    HANGS = "hangs"


def verdict(
    elapsed: float, failure_draw: float, decline_draw: float, settings: GatewaySettings
) -> Verdict:
    """What the gateway does with a call made `elapsed` seconds after it started."""
    outage_end = settings.outage_start + settings.outage_duration
    if settings.outage_duration > 0 and settings.outage_start <= elapsed < outage_end:
        return Verdict.HANGS
    if failure_draw < settings.throttle_rate:
        return Verdict.THROTTLED
    if failure_draw < settings.throttle_rate + settings.failure_rate:
        return Verdict.FAILED
    if decline_draw < settings.decline_rate:
        return Verdict.DECLINED
    return Verdict.APPROVED


class GatewayError(Exception):
    """The gateway failed to answer (transient: worth retrying)."""


class GatewayThrottled(Exception):
    """The gateway answered 429 with `Retry-After`: it is up, and asks us to come back later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429 from the payment gateway, Retry-After: {retry_after:g}s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ChargeResult:
    approved: bool
    payment_id: str = ""
    reason: str = ""


class Gateway:
    """The client of the simulated gateway."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rand = rand
        self._started = clock()
        self.calls = 0

    async def charge(self, order_id: str, amount_cents: int) -> ChargeResult:
        """Charge once; raises GatewayError on a failure, GatewayThrottled on a 429, hangs
        during the outage."""
        self.calls += 1
        decided = verdict(self._clock() - self._started, self._rand(), self._rand(), self.settings)
        latency = self.settings.latency * (0.5 + self._rand())
        if decided is Verdict.HANGS:
            await asyncio.sleep(3600)  # cut by the caller's timeout
        await asyncio.sleep(latency)
        if decided is Verdict.FAILED:
            raise GatewayError("503 from the payment gateway")
        if decided is Verdict.THROTTLED:
            raise GatewayThrottled(self.settings.retry_after)
        if decided is Verdict.DECLINED:
            return ChargeResult(approved=False, reason="card declined")
        return ChargeResult(approved=True, payment_id=f"pay-{uuid.uuid4().hex[:12]}")
