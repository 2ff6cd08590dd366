"""PaymentWorker: charges through the gateway (timeout + circuit breaker) and announces the
outcome. While the breaker is open the worker stops taking deliveries: charges wait in the
queue instead of burning attempts against a dead gateway. A gateway answering "429,
Retry-After" is up: the charge is retried after that long (RetryLater, no attempt burned)
and the breaker does not count it as a failure."""

from __future__ import annotations

import asyncio

from framework import Bus, CircuitBreaker, Context, RetryLater, Worker
from schemas.payments import ChargePayment, PaymentFailed, PaymentSucceeded
from services.payments.gateway import Gateway, GatewayError, GatewaySettings, GatewayThrottled


class GatewayTimeout(GatewayError):
    """The gateway did not answer within our bound."""


class PaymentWorker(Worker):
    queue = "payments"
    service = "payments"
    prefetch = 64
    max_attempts = 8
    timeout = 5.0
    retry_base_delay = 0.25
    retry_max_delay = 4.0

    def __init__(self, bus: Bus, gateway: Gateway | None = None) -> None:
        super().__init__(bus)
        self.gateway = gateway or Gateway(GatewaySettings())
        # Per instance: a breaker describes this process's view of the gateway.
        self.breaker = CircuitBreaker(
            "payment-gateway",
            failure_threshold=10,
            failure_rate=0.5,
            min_calls=20,
            window=5.0,
            reset_timeout=1.0,
            failure_types=(GatewayError,),  # failures of the gateway, not its 429 answers
        )
        self.breakers = (self.breaker,)

    async def handle(self, msg: ChargePayment, ctx: Context) -> None:
        async with self.breaker:
            try:
                async with asyncio.timeout(self.gateway.settings.timeout):
                    result = await self.gateway.charge(msg.order_id, msg.amount_cents)
            except TimeoutError as exc:
                raise GatewayTimeout(
                    f"no answer within {self.gateway.settings.timeout:g}s"
                ) from exc
            except GatewayThrottled as exc:
                raise RetryLater(after=exc.retry_after, reason=str(exc)) from exc
        fields = msg.model_dump()
        if result.approved:
            await ctx.publish(PaymentSucceeded(**fields, payment_id=result.payment_id))
        else:
            await ctx.publish(PaymentFailed(**fields, reason=result.reason))
