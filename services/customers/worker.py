"""CustomerWorker: the owner of customer data. Publishes every customer once on start and
re-publishes (a snapshot) on RefreshCustomers, so replicas elsewhere can catch up.

Settings from the environment: CUSTOMERS_SAMPLE_SIZE (how many made-up customers).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Bus, Context, Worker
from schemas.customers import CustomerUpdated, RefreshCustomers
from services.customers.directory import Customer, Directory


class CustomersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMERS_", extra="ignore")

    sample_size: int = 50


def as_event(customer: Customer) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id=customer.customer_id,
        version=customer.version,
        name=customer.name,
        email=customer.email,
    )


class CustomerWorker(Worker):
    queue = "customers"
    service = "customers"
    prefetch = 4
    timeout = 30.0
    retry_base_delay = 0.5
    retry_max_delay = 10.0

    def __init__(self, bus: Bus, directory: Directory | None = None) -> None:
        super().__init__(bus)
        self.directory = directory or Directory.sample(CustomersSettings().sample_size)

    async def run(self) -> None:
        await self.bus.declare(type(self))
        await self.publish_all()
        await super().run()

    async def publish_all(self) -> None:
        """Announce every customer; the key names the version, so repeats are deduplicated."""
        for customer in self.directory.all():
            await self.bus.publish(
                as_event(customer),
                idempotency_key=f"customer-{customer.customer_id}-v{customer.version}",
            )

    async def update(
        self, customer_id: str, *, name: str | None = None, email: str | None = None
    ) -> CustomerUpdated:
        """Change a customer and announce it."""
        event = as_event(self.directory.update(customer_id, name=name, email=email))
        await self.bus.publish(event, idempotency_key=f"customer-{customer_id}-v{event.version}")
        return event

    async def handle(self, msg: RefreshCustomers, ctx: Context) -> None:
        customers = self.directory.all(msg.customer_ids)
        ctx.log.info("customers.snapshot", requested_by=msg.requested_by, count=len(customers))
        for customer in customers:
            await ctx.publish(as_event(customer))
