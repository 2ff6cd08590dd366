"""Accounting for the demo's orders (pure): what became of each, latencies, the verdict."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass
class Tally:
    """What the demo saw happen to the orders of one run (ids start with `prefix`)."""

    prefix: str
    expected: int
    sent_at: dict[str, float] = field(default_factory=dict)
    placed: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)  # order id -> paid | declined
    settled_at: dict[str, float] = field(default_factory=dict)
    receipts: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)  # order id -> DLQ (queue: reason)

    def mine(self, order_id: str) -> bool:
        return order_id.startswith(self.prefix)

    def settle(self, order_id: str, outcome: str, at: float) -> None:
        if order_id not in self.outcomes:
            self.outcomes[order_id] = outcome
            self.settled_at[order_id] = at

    def counts(self) -> Counter[str]:
        return Counter(self.outcomes.values())

    def accounted(self) -> set[str]:
        """Orders paid, declined, or in a DLQ with a reason."""
        return set(self.outcomes) | set(self.dead)

    def missing(self) -> list[str]:
        return sorted(set(self.sent_at) - self.accounted())

    def all_accounted(self) -> bool:
        return len(self.sent_at) == self.expected and not self.missing()

    def latencies(self) -> list[float]:
        """Seconds from sending PlaceOrder to seeing its payment outcome."""
        return [at - self.sent_at[o] for o, at in self.settled_at.items() if o in self.sent_at]
