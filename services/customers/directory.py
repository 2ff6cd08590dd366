"""The customers service's own data: customers with a version that grows on every change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str
    email: str
    version: int = 1


class Directory:
    """Customers by id (in memory; a real service would use its own database)."""

    def __init__(self, customers: list[Customer] | None = None) -> None:
        self._customers = {c.customer_id: c for c in customers or []}

    @classmethod
    def sample(cls, count: int) -> Directory:
        """`count` made-up customers c0, c1, ... (the demo's customer base)."""
        return cls(
            [Customer(f"c{n}", f"Customer {n}", f"customer{n}@example.com") for n in range(count)]
        )

    def get(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    def all(self, ids: list[str] | None = None) -> list[Customer]:
        """Every customer, or those of `ids` that exist, sorted by id."""
        chosen = (
            self._customers
            if ids is None
            else {i: self._customers[i] for i in ids if i in self._customers}
        )
        return [chosen[i] for i in sorted(chosen)]

    def update(
        self, customer_id: str, *, name: str | None = None, email: str | None = None
    ) -> Customer:
        """Change a customer (or create it), bumping its version."""
        old = self._customers.get(customer_id)
        new = Customer(
            customer_id,
            name if name is not None else (old.name if old else customer_id),
            email if email is not None else (old.email if old else ""),
            (old.version + 1) if old else 1,
        )
        self._customers[customer_id] = new
        return new
