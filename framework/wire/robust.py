"""A robust connection that fails over between the nodes of a cluster, with jittered backoff.

aio-pika's RobustConnection reconnects to the one URL it was given, sleeping a fixed
`reconnect_interval` between attempts; with many replicas that makes them reconnect in
lockstep after a broker restart, and a client of a cluster cannot move to a surviving node.
Here every read of the interval yields the next jittered, doubling delay (reset once
connected), and every reconnect attempt after the first goes to the next URL in turn: the
node that was lost is tried again only after the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import UnderlayConnection
from yarl import URL

from framework.resilience.retrying import RECONNECT
from framework.wire.urls import mask_url

RECONNECT_BASE = RECONNECT.first
RECONNECT_CAP = RECONNECT.cap


def reconnect_delay(
    failures: int, rand: float, base: float = RECONNECT_BASE, cap: float = RECONNECT_CAP
) -> float:
    """Delay before reconnect attempt `failures` + 1 (`retrying.RECONNECT`): doubling from
    `base`, jittered in [50%, 100%] of the nominal value, never above `cap`."""
    policy = (
        RECONNECT
        if (base, cap) == (RECONNECT.first, RECONNECT.cap)
        else replace(RECONNECT, first=base, cap=cap)
    )
    return policy.delay(failures + 1, rand)


def next_node(current: int, nodes: int) -> int:
    """The node a reconnect tries after `current`: the next one, wrapping around."""
    return (current + 1) % nodes


class JitteredRobustConnection(RobustConnection):
    """RobustConnection over one or more node URLs, with exponential, jittered delays.

    `start` is the index of the URL the first attempt uses (the initial connect retries
    pass their attempt number, so they rotate too).
    """

    def __init__(
        self, urls: URL | Sequence[URL], *args: Any, start: int = 0, **kwargs: Any
    ) -> None:
        self._urls = [URL(urls)] if isinstance(urls, (URL, str)) else [URL(u) for u in urls]
        if not self._urls:
            raise ValueError("no broker URL given")
        self._node = start % len(self._urls)
        self._failures = 0
        self._delay = reconnect_delay(0, random.random())
        self._attempts = 0
        self._transport: UnderlayConnection | None = None
        self._built = False
        super().__init__(self._urls[self._node], *args, **kwargs)
        self._built = True

    @property
    def url(self) -> URL:
        """The URL of the node this connection is on (or trying next)."""
        return self._urls[self._node]

    @url.setter
    def url(self, value: URL) -> None:
        """aio-pika sets the URL on init and on `update_secret`: it applies to this node."""
        self._urls[self._node] = URL(value)

    @property
    def server_version(self) -> str | None:
        """The broker's version as it announced it on connecting (None before)."""
        transport = self._transport
        version = transport.connection.server_properties.get("version") if transport else None
        return str(version) if version else None

    @property
    def masked_url(self) -> str:
        """`url` with its password hidden, for logs and health output (without the
        heartbeat option the framework adds to every URL)."""
        url = self.url
        shown = url.with_query({k: v for k, v in url.query.items() if k != "heartbeat"})
        return mask_url(str(shown))

    @property
    def transport(self) -> UnderlayConnection | None:
        return self._transport

    @transport.setter
    def transport(self, value: UnderlayConnection | None) -> None:
        # RobustConnection clears the transport right before each connection attempt (and
        # on close): the first attempt goes to the start node, every later one to the next,
        # after a delay that grows with the failures since the last success.
        if value is None and self._built and not self._close_called:
            if self._attempts:
                self._node = next_node(self._node, len(self._urls))
                self._failures += 1
                self._delay = reconnect_delay(self._failures, random.random())
            self._attempts += 1
        self._transport = value

    @property
    def reconnect_interval(self) -> float:
        """The pause before the next attempt (the same value in aio-pika's log line)."""
        return self._delay

    @reconnect_interval.setter
    def reconnect_interval(self, _value: float) -> None:
        """aio-pika assigns its fixed interval here; the schedule above replaces it."""

    async def _on_connected(self) -> None:
        if self._attempts > 1:  # a reconnect, not the first connect (set before the
            self.reconnected_at = time.monotonic()  # channels are restored and used again)
        await super()._on_connected()
        self._failures = 0
        self._delay = reconnect_delay(0, random.random())

    #: `time.monotonic()` of the last reconnect (None: never reconnected)
    reconnected_at: float | None = None
