"""Pausing a worker's consumer while any of its circuit breakers is open.

`consumer_mode` is the pure rule; `BreakerGate.run` is the owned task applying it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from framework.resilience.breaker import BreakerState, CircuitBreaker
from framework.wire.port import Subscription


@dataclass(frozen=True, slots=True)
class Mode:
    """What the consumer should do: not consume, or consume with this prefetch."""

    prefetch: int  # 0 = paused


def consumer_mode(states: Sequence[tuple[BreakerState, int]], prefetch: int) -> Mode:
    """Paused while any breaker is open; a few probes while any is half-open; else full.

    `states` pairs each breaker's state with its half-open probe limit.
    """
    if any(state is BreakerState.OPEN for state, _ in states):
        return Mode(0)
    probes = [limit for state, limit in states if state is BreakerState.HALF_OPEN]
    if probes:
        return Mode(min(min(probes), prefetch))
    return Mode(prefetch)


class BreakerGate:
    """Watches breakers and pauses/resumes a consumer accordingly."""

    def __init__(
        self, breakers: Sequence[CircuitBreaker], consumer: Subscription, prefetch: int, queue: str
    ) -> None:
        self._breakers = list(breakers)
        self._consumer = consumer
        self._prefetch = prefetch
        self._changed = asyncio.Event()
        self._log = structlog.get_logger("framework.breaker").bind(queue=queue)

    def _on_transition(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        self._log.warning("breaker.transition", breaker=breaker.name, old=old.value, new=new.value)
        self._changed.set()

    async def run(self) -> None:
        """Apply the mode on every transition, and wake when an open breaker half-opens."""
        for breaker in self._breakers:
            breaker.add_listener(self._on_transition)
        try:
            while True:
                self._changed.clear()
                states = [(b.state, b.policy.half_open_max_calls) for b in self._breakers]
                mode = consumer_mode(states, self._prefetch)
                await self._apply(mode)
                waits = [b.retry_in() for b in self._breakers if b.state is BreakerState.OPEN]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(waits) + 0.01 if waits else None):
                        await self._changed.wait()
        finally:
            for breaker in self._breakers:
                breaker.remove_listener(self._on_transition)

    async def _apply(self, mode: Mode) -> None:
        if mode.prefetch == 0:
            if self._consumer.consuming:
                self._log.warning("worker.paused", reason="circuit open")
                await self._consumer.pause()
        elif not self._consumer.consuming or self._consumer.prefetch != mode.prefetch:
            self._log.info("worker.resumed", prefetch=mode.prefetch)
            await self._consumer.start(mode.prefetch)
