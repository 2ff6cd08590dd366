"""payments: the simulated gateway's rules, and the worker's outcomes and guards."""

from __future__ import annotations

import pytest

from framework import BreakerState, CircuitOpenError, RetryLater
from schemas.payments import ChargePayment, PaymentFailed, PaymentSucceeded
from services.payments.gateway import Gateway, GatewayError, GatewaySettings, Verdict, verdict
from services.payments.worker import GatewayTimeout, PaymentWorker
from tests.unit.services.service_fakes import RecordingBus, context

CHARGE = ChargePayment(order_id="o1", customer_id="c1", amount_cents=500)


def settings(**overrides: float) -> GatewaySettings:
    values = {
        "latency": 0.0,
        "failure_rate": 0.0,
        "decline_rate": 0.0,
        "outage_start": 0.0,
        "outage_duration": 0.0,
        "timeout": 0.05,
    }
    values.update(overrides)
    return GatewaySettings.model_validate(values)


def test_verdict_outage_failures_declines() -> None:
    """Inside the outage window every call hangs; outside, the draws decide."""
    s = settings(failure_rate=0.2, decline_rate=0.1, outage_start=10, outage_duration=5)
    assert verdict(12, 0.9, 0.9, s) is Verdict.HANGS
    assert verdict(15, 0.9, 0.9, s) is Verdict.APPROVED
    assert verdict(1, 0.1, 0.9, s) is Verdict.FAILED
    assert verdict(1, 0.5, 0.05, s) is Verdict.DECLINED


class Draws:
    """A random source that returns a fixed sequence (then 0.99 forever)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0) if self.values else 0.99


def payments(bus: RecordingBus, gateway_settings: GatewaySettings, *draws: float) -> PaymentWorker:
    return PaymentWorker(bus, Gateway(gateway_settings, rand=Draws(*draws)))  # type: ignore[arg-type]


async def test_approved_charge_announces_success() -> None:
    """Approved: PaymentSucceeded with the gateway's payment id."""
    bus = RecordingBus()
    await payments(bus, settings()).handle(CHARGE, context(bus))
    [event] = bus.published
    assert isinstance(event, PaymentSucceeded) and event.payment_id.startswith("pay-")


async def test_decline_is_a_business_outcome_not_an_error() -> None:
    """Declined: PaymentFailed is published and the delivery succeeds (no retry, no DLQ)."""
    bus = RecordingBus()
    await payments(bus, settings(decline_rate=1.0)).handle(CHARGE, context(bus))
    assert bus.published == [
        PaymentFailed(order_id="o1", customer_id="c1", amount_cents=500, reason="card declined")
    ]


async def test_gateway_failure_is_transient() -> None:
    """A 503 raises (the framework retries with backoff); nothing is announced."""
    bus = RecordingBus()
    with pytest.raises(GatewayError):
        await payments(bus, settings(failure_rate=1.0)).handle(CHARGE, context(bus))
    assert bus.published == []


async def test_a_hanging_gateway_is_cut_by_the_timeout() -> None:
    """During the outage the call hangs; the worker's bound turns it into GatewayTimeout."""
    bus = RecordingBus()
    with pytest.raises(GatewayTimeout):
        await payments(bus, settings(outage_duration=60)).handle(CHARGE, context(bus))


async def test_repeated_failures_open_the_breaker_and_stop_calls() -> None:
    """After enough failures the breaker opens; further charges fail fast without a call."""
    bus = RecordingBus()
    worker = payments(bus, settings(failure_rate=1.0))
    assert worker.breakers == (worker.breaker,)
    for _ in range(10):
        with pytest.raises(GatewayError):
            await worker.handle(CHARGE, context(bus))
    assert worker.breaker.state is BreakerState.OPEN
    calls = worker.gateway.calls
    with pytest.raises(CircuitOpenError):
        await worker.handle(CHARGE, context(bus))
    assert worker.gateway.calls == calls


def test_verdict_throttles_before_it_fails() -> None:
    """The lowest failure draws answer 429 (throttle_rate), the next ones fail (failure_rate)."""
    s = settings(failure_rate=0.2, throttle_rate=0.1)
    assert verdict(1, 0.05, 0.9, s) is Verdict.THROTTLED
    assert verdict(1, 0.25, 0.9, s) is Verdict.FAILED
    assert verdict(1, 0.35, 0.9, s) is Verdict.APPROVED


async def test_a_429_is_retried_later_and_does_not_open_the_breaker() -> None:
    """Retry-After becomes RetryLater (no attempt burned); the gateway is up, so the breaker
    counts no failure however often it answers 429."""
    bus = RecordingBus()
    worker = payments(bus, settings(throttle_rate=1.0, retry_after=2.0))
    for _ in range(15):
        with pytest.raises(RetryLater) as caught:
            await worker.handle(CHARGE, context(bus))
    assert caught.value.after == 2.0 and "429" in str(caught.value)
    assert worker.breaker.state is BreakerState.CLOSED
    assert bus.published == []
