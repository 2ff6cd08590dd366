"""Counters of what a worker did, updated from the same settlement value that was applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from framework.consume.decisions import Ack, DeadLetter, Reason, Retry, Settlement
from framework.ops.sla import Breach, breach_of

# Called with every applied settlement and the seconds from delivery to outcome (metrics).
SettlementObserver = Callable[[Settlement, float], None]
# Called with a first delivery's time in queue (seconds), or None when its timestamp was
# further ahead than the clock skew tolerance (framework.ops.sla).
WaitObserver = Callable[[float | None], None]


@dataclass
class WorkerStats:
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    retry_laters: int = 0  # of `retried`: the handler raised RetryLater
    dead_lettered: int = 0
    expired: int = 0
    settle_failures: int = 0
    in_flight: int = 0
    replies_refused: int = 0
    timeouts: int = 0
    skewed_timestamps: int = 0
    observers: list[SettlementObserver] = field(default_factory=list, repr=False, compare=False)
    refusal_observers: list[Callable[[], None]] = field(
        default_factory=list, repr=False, compare=False
    )
    breach_observers: list[Callable[[Breach], None]] = field(
        default_factory=list, repr=False, compare=False
    )
    wait_observers: list[WaitObserver] = field(default_factory=list, repr=False, compare=False)

    def record(
        self, settlement: Settlement, duration: float = 0.0, timed_out: bool = False
    ) -> None:
        """Count one applied settlement; `timed_out`: its handler ran past the timeout."""
        match settlement:
            case Ack(duplicate=True):
                self.duplicates += 1
            case Ack():
                self.handled += 1
            case Retry(waiting=True):
                pass  # one hop of a long wait: nothing happened to count
            case Retry(retry_later=int()):
                self.retried += 1
                self.retry_laters += 1
            case Retry():
                self.retried += 1
            case DeadLetter(reason=reason):
                self.dead_lettered += 1
                if reason is Reason.EXPIRED:
                    self.expired += 1
        for observer in self.observers:
            observer(settlement, duration)
        breach = breach_of(settlement, timed_out)
        if breach is not None:
            self._breached(breach)

    def _breached(self, breach: Breach) -> None:
        if breach is Breach.TIMEOUT:  # a deadline breach is counted in `expired`
            self.timeouts += 1
        for observer in self.breach_observers:
            observer(breach)

    def waited(self, seconds: float | None) -> None:
        """A first delivery's time in queue; None: its timestamp was too far ahead to trust."""
        if seconds is None:
            self.skewed_timestamps += 1
        for observer in self.wait_observers:
            observer(seconds)

    def reply_refused(self) -> None:
        """A request's `reply_to` was not a direct reply-to name: no reply was sent."""
        self.replies_refused += 1
        for observer in self.refusal_observers:
            observer()

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
