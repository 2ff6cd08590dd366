"""OrderWorker: stores a PlaceOrder, announces OrderPlaced and asks payments to charge it.

Built only on framework's public API. Settings from the environment: ORDERS_DB (SQLite
path, default in-memory), ORDERS_MAX_AMOUNT_CENTS (larger orders are refused for good).

The order, the inbox row of the PlaceOrder and the two messages it causes are one SQLite
transaction (the worker's `database`, framework.outbox): a crash before the commit leaves
nothing, a crash after it loses nothing (the relay publishes what was committed), and a
redelivery after the commit is acked as a duplicate without running the handler again.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Bus, Context, PermanentError, Worker
from schemas.orders import OrderPlaced, PlaceOrder
from schemas.payments import ChargePayment
from services.orders.store import OrderStore, insert


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
        self.database = f"sqlite:///{self.settings.db}"  # inbox, outbox and orders: one file
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
        fields: dict[str, Any] = msg.model_dump()
        # Every effect inside the transaction: the order row and both messages (outbox rows
        # with keys derived from this delivery's key) commit together or not at all.
        async with ctx.transaction() as tx:
            await tx.connection.run(
                lambda db: insert(db, msg.order_id, msg.customer_id, msg.amount_cents)
            )
            await ctx.publish(OrderPlaced(**fields))
            await ctx.send(ChargePayment(**fields))
