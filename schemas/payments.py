"""Contracts of the payments service: the charge it accepts and the outcomes it announces."""

from __future__ import annotations

from pydantic import Field

from framework import Command, Event


class ChargePayment(Command):
    """Ask the payments service to charge an order's amount to its customer."""

    type_name = "payments.ChargePayment.v1"
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


class PaymentSucceeded(Event):
    """The gateway captured the amount."""

    type_name = "payments.PaymentSucceeded.v1"
    order_id: str
    customer_id: str
    amount_cents: int
    payment_id: str


class PaymentFailed(Event):
    """The gateway declined the charge (a business outcome, not an error)."""

    type_name = "payments.PaymentFailed.v1"
    order_id: str
    customer_id: str
    amount_cents: int
    reason: str
