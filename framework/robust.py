"""A robust connection whose reconnect delay backs off exponentially with jitter.

aio-pika's RobustConnection sleeps a fixed `reconnect_interval` between attempts; with many
replicas that makes them reconnect in lockstep after a broker restart. Here every read of
the interval yields the next jittered, doubling delay, reset once connected.
"""

from __future__ import annotations

import random
from typing import Any

from aio_pika import RobustConnection

RECONNECT_BASE = 0.5
RECONNECT_CAP = 15.0


def reconnect_delay(failures: int, rand: float, base: float = RECONNECT_BASE,
                    cap: float = RECONNECT_CAP) -> float:
    """Delay before reconnect attempt `failures` + 1: doubling from `base`, jittered in
    [50%, 100%] of the nominal value, never above `cap`."""
    nominal = min(cap, base * 2.0 ** min(failures, 30))
    return nominal * (0.5 + 0.5 * rand)


class JitteredRobustConnection(RobustConnection):
    """RobustConnection with exponential, jittered reconnect delays."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failures = 0
        super().__init__(*args, **kwargs)

    @property
    def reconnect_interval(self) -> float:
        delay = reconnect_delay(self._failures, random.random())
        self._failures += 1
        return delay

    @reconnect_interval.setter
    def reconnect_interval(self, _value: float) -> None:
        """aio-pika assigns its fixed interval here; the schedule above replaces it."""

    async def _on_connected(self) -> None:
        await super()._on_connected()
        self._failures = 0
