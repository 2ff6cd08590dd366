"""OrderWorker: stores a PlaceOrder, announces OrderPlaced and asks payments to charge it.

Built only on framework's public API. Settings from the environment: ORDERS_DB (SQLite
path, default in-memory), ORDERS_MAX_AMOUNT_CENTS (larger orders are refused for good).
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Bus, Context, PermanentError, Worker
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import ChargePayment
from services.orders.store import OrderStore


class OrdersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore")

    db: str = ":memory:"
    max_amount_cents: int = 1_000_000


class OrderWorker(Worker):
    queue = "orders"
    service = "orders"
    prefetch = 64
    max_attempts = 5
    timeout = 5.0
    retry_base_delay = 0.25
    retry_max_delay = 8.0
    publishes = (OrderPlaced, ChargePayment)

    def __init__(self, bus: Bus, settings: OrdersSettings | None = None) -> None:
        super().__init__(bus)
        self.settings = settings or OrdersSettings()
        self.orders = OrderStore(self.settings.db)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.orders.close()

    async def handle(self, msg: PlaceOrder, ctx: Context) -> None:
        if msg.amount_cents > self.settings.max_amount_cents:
            raise PermanentError(
                f"order {msg.order_id}: {msg.amount_cents} cents exceeds the limit of "
                f"{self.settings.max_amount_cents}"
            )
        # Stored before publishing: a retry after a failed publish finds it and re-publishes
        # the same (derived) keys, which downstream workers deduplicate.
        self.orders.add(msg.order_id, msg.customer_id, msg.amount_cents)
        fields: dict[str, Any] = msg.model_dump()
        await ctx.publish(OrderPlaced(**fields))
        await ctx.send(ChargePayment(**fields))
