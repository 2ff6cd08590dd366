"""The fate of each message of a batch send (data only: errors and send_batch both use it)."""

from __future__ import annotations

from dataclasses import dataclass

CONFIRMED = "confirmed"
NOT_SENT = "not-sent"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message of a batch: `index` in the batch, its `key`, and
    `error` (None once confirmed). `sent` is False when the batch stopped before it."""

    index: int
    key: str
    error: Exception | None = None
    sent: bool = True

    @property
    def confirmed(self) -> bool:
        return self.sent and self.error is None

    @property
    def fate(self) -> str:
        """`confirmed`, `not-sent`, or the error's type name (`Overloaded`, ...)."""
        if not self.sent:
            return NOT_SENT
        return CONFIRMED if self.error is None else type(self.error).__name__
