"""Two workers of the notifications service.

`NotificationWorker` (queue `notifications`) keeps the customers replica (CustomerUpdated)
and turns PaymentSucceeded/PaymentFailed into SendReceipt; a payment for a customer not yet
replicated is retried later (the replica asks the owner for a snapshot while it is stale).
It scales out: each process's replica is fed from a queue of its own,
`notifications.customers.<instance>` (`Replica.feeding`), so every process gets every
CustomerUpdated; the payment events are shared by all on `notifications`.
`ReceiptWorker` (queue `notifications.receipts`) sends the email and announces ReceiptSent.

Settings from the environment: NOTIFICATIONS_REPLICA_PATH (SQLite file, one per instance:
`{instance}` in it is replaced by the instance's name; default in memory),
NOTIFICATIONS_REFRESH_EVERY (seconds between staleness checks), NOTIFICATIONS_INSTANCE (the
instance's name; default host name and process id).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Bus, Context, Replica, Worker, instance_name
from schemas.customers import CustomerUpdated, RefreshCustomers
from schemas.notifications import ReceiptSent, SendReceipt
from schemas.payments import PaymentFailed, PaymentSucceeded
from services.notifications.mailer import Mailer, receipt_email


class NotificationsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")

    replica_path: str | None = None
    refresh_every: float = 60.0
    instance: str | None = None


# The prefix of each instance's own customer-events queue: `notifications.customers.<instance>`
CUSTOMERS_FEED = "notifications.customers"


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
        self.instance = self.settings.instance or instance_name()
        path = self.settings.replica_path
        self.customers = customers_replica(
            None if path is None else path.replace("{instance}", self.instance)
        )
        self.feed: Worker | None = None  # from run on: consumes this instance's customer events

    async def run(self) -> None:
        with self.customers:
            # subscribed (own queue, and the shared one) before asking for a snapshot
            async with self.customers.feeding(
                self.bus, CUSTOMERS_FEED, instance=self.instance
            ) as feeding:
                self.feed = feeding.worker
                await self.bus.declare(type(self))
                async with self.customers.refreshing(
                    self.bus,
                    lambda: RefreshCustomers(requested_by=self.spec.queue),
                    every=self.settings.refresh_every,
                ):
                    await super().run()

    @property
    def alive(self) -> bool:
        """Also False once the feed's run loop ended: the replica would silently go stale."""
        return super().alive and (self.feed is None or self.feed.alive)

    @property
    def receiving(self) -> bool:
        """Also False while the feed's subscription is lost (`/readyz`)."""
        return super().receiving and self.feed is not None and self.feed.receiving

    async def handle(
        self, msg: PaymentSucceeded | PaymentFailed | CustomerUpdated, ctx: Context
    ) -> None:
        if isinstance(msg, CustomerUpdated):
            # still bound to the shared queue (brokers keep the binding of earlier versions):
            # this instance applies its copy, the feed gives every instance its own
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
