"""Contracts of the order flow, shared by services (a service imports schemas, never another
service)."""

from __future__ import annotations

from pydantic import Field

from framework import Command, Event


class PlaceOrder(Command):
    """Ask the orders service to place an order."""

    type_name = "orders.PlaceOrder.v1"
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


class OrderPlaced(Event):
    """An order was stored and accepted; payment has been requested."""

    type_name = "orders.OrderPlaced.v1"
    order_id: str
    customer_id: str
    amount_cents: int
