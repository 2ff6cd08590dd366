"""Two workers of the notifications service.

`NotificationWorker` (queue `notifications`) keeps the customers replica (CustomerUpdated)
and turns PaymentSucceeded/PaymentFailed into SendReceipt; a payment for a customer not yet
replicated is retried later (the replica asks the owner for a snapshot while it is stale).
`ReceiptWorker` (queue `notifications.receipts`) sends the email and announces ReceiptSent.

Settings from the environment: NOTIFICATIONS_REPLICA_PATH (SQLite file; default in memory),
NOTIFICATIONS_REFRESH_EVERY (seconds between staleness checks).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Bus, Context, Replica, Worker
from schemas.customers import CustomerUpdated, RefreshCustomers
from schemas.notifications import ReceiptSent, SendReceipt
from schemas.payments import PaymentFailed, PaymentSucceeded
from services.notifications.mailer import Mailer, receipt_email


class NotificationsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")

    replica_path: str | None = None
    refresh_every: float = 60.0


class CustomerNotReplicated(Exception):
    """The customer's data has not reached the local replica yet (transient: retried)."""


def customers_replica(path: str | None) -> Replica[CustomerUpdated]:
    return Replica(
        "customers",
        CustomerUpdated,
        key=lambda c: c.customer_id,
        version=lambda c: c.version,
        path=path,
    )


class NotificationWorker(Worker):
    queue = "notifications"
    service = "notifications"
    prefetch = 64
    max_attempts = 10
    timeout = 5.0
    retry_base_delay = 0.25
    retry_max_delay = 8.0

    def __init__(self, bus: Bus, settings: NotificationsSettings | None = None) -> None:
        super().__init__(bus)
        self.settings = settings or NotificationsSettings()
        self.customers = customers_replica(self.settings.replica_path)

    async def run(self) -> None:
        await self.bus.declare(type(self))  # subscribed before asking for a snapshot
        with self.customers:
            async with self.customers.refreshing(
                self.bus,
                lambda: RefreshCustomers(requested_by=self.spec.queue),
                every=self.settings.refresh_every,
            ):
                await super().run()

    async def handle(
        self, msg: PaymentSucceeded | PaymentFailed | CustomerUpdated, ctx: Context
    ) -> None:
        if isinstance(msg, CustomerUpdated):
            self.customers.apply(msg, event_key=ctx.message_id)
            return
        customer = self.customers.get(msg.customer_id)
        if customer is None:
            raise CustomerNotReplicated(
                f"customer {msg.customer_id} not in the local replica yet "
                f"(staleness {self.customers.staleness():.1f}s)"
            )
        await ctx.send(
            SendReceipt(
                order_id=msg.order_id,
                customer_id=msg.customer_id,
                name=customer.name,
                email=customer.email,
                amount_cents=msg.amount_cents,
                outcome="paid" if isinstance(msg, PaymentSucceeded) else "declined",
            )
        )


class ReceiptWorker(Worker):
    queue = "notifications.receipts"
    service = "notifications"
    prefetch = 64
    timeout = 5.0
    retry_base_delay = 0.25
    retry_max_delay = 8.0

    def __init__(self, bus: Bus, mailer: Mailer | None = None) -> None:
        super().__init__(bus)
        self.mailer = mailer or Mailer()

    async def handle(self, msg: SendReceipt, ctx: Context) -> None:
        await self.mailer.send(
            receipt_email(msg.name, msg.email, msg.order_id, msg.amount_cents, msg.outcome)
        )
        await ctx.publish(ReceiptSent(order_id=msg.order_id, email=msg.email, outcome=msg.outcome))
