"""Contracts of the notifications service: the receipt it sends and the fact it was sent."""

from __future__ import annotations

from typing import Literal

from framework import Command, Event


class SendReceipt(Command):
    """Send one receipt email for a payment outcome."""

    type_name = "notifications.SendReceipt.v1"
    order_id: str
    customer_id: str
    name: str
    email: str
    amount_cents: int
    outcome: Literal["paid", "declined"]


class ReceiptSent(Event):
    """A receipt went out (the demo and tests watch for it)."""

    type_name = "notifications.ReceiptSent.v1"
    order_id: str
    email: str
    outcome: Literal["paid", "declined"]
