"""OrderWorker: handles PlaceOrder and emits OrderPlaced (built only on framework's public API)."""

from __future__ import annotations

from framework import Context, Worker
from schemas.orders import OrderPlaced, PlaceOrder


class OrderWorker(Worker):
    queue = "orders"
    prefetch = 32
    max_attempts = 5
    timeout = 5.0
    retry_base_delay = 1.0
    retry_max_delay = 60.0
    publishes = (OrderPlaced,)

    async def handle(self, msg: PlaceOrder, ctx: Context) -> None:
        ctx.log.info("order.placed", order_id=msg.order_id, amount_cents=msg.amount_cents)
        await ctx.publish(OrderPlaced(order_id=msg.order_id, customer_id=msg.customer_id,
                                      amount_cents=msg.amount_cents))
