"""A stand-in for an email provider: records what it would send."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    body: str


@dataclass
class Mailer:
    """Keeps the last 1000 emails (bounded: a long-running service must not grow)."""

    sent: deque[Email] = field(default_factory=lambda: deque(maxlen=1000))

    async def send(self, email: Email) -> None:
        self.sent.append(email)


def receipt_email(name: str, email: str, order_id: str, amount_cents: int, outcome: str) -> Email:
    """The receipt text (pure)."""
    amount = f"{amount_cents / 100:.2f}"
    if outcome == "paid":
        subject = f"Receipt for order {order_id}"
        body = f"Hi {name}, we received your payment of {amount} for order {order_id}."
    else:
        subject = f"Payment for order {order_id} declined"
        body = f"Hi {name}, your payment of {amount} for order {order_id} was declined."
    return Email(to=email, subject=subject, body=body)
