"""Contracts of the customers service, which owns customer data.

Other services keep a local replica fed by `CustomerUpdated` and never ask at run time;
`RefreshCustomers` asks the owner to re-publish its data (a snapshot) to catch up.
"""

from __future__ import annotations

from pydantic import Field

from framework import Command, Event


class CustomerUpdated(Event):
    """A customer's current data. `version` grows with every change, so replicas can ignore
    older or repeated updates."""

    type_name = "customers.CustomerUpdated.v1"
    customer_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    name: str
    email: str


class RefreshCustomers(Command):
    """Ask the customers service to re-publish `CustomerUpdated` for every customer (or the
    given ones)."""

    type_name = "customers.RefreshCustomers.v1"
    requested_by: str
    customer_ids: list[str] | None = None
