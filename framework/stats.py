"""Counters of what a worker did, updated from the same settlement value that was applied."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from framework.settlement import Ack, DeadLetter, Reason, Retry, Settlement


@dataclass
class WorkerStats:
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    expired: int = 0
    settle_failures: int = 0
    in_flight: int = 0

    def record(self, settlement: Settlement) -> None:
        match settlement:
            case Ack(duplicate=True):
                self.duplicates += 1
            case Ack():
                self.handled += 1
            case Retry():
                self.retried += 1
            case DeadLetter(reason=reason):
                self.dead_lettered += 1
                if reason is Reason.EXPIRED:
                    self.expired += 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
