"""Reconnect delays back off exponentially with jitter, so replicas do not stampede."""

from __future__ import annotations

import pytest
from yarl import URL

from framework.wire.robust import JitteredRobustConnection, next_node, reconnect_delay


@pytest.mark.parametrize("failures", range(40))
@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_delay_bounds(failures: int, rand: float) -> None:
    """Delays stay within [base/2, cap]."""
    assert 0.25 <= reconnect_delay(failures, rand) <= 15.0


def test_delay_doubles_then_caps() -> None:
    """The nominal delay doubles per failure until the cap."""
    assert [reconnect_delay(n, 1.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_jitter_spreads_delays() -> None:
    """Two draws at the same failure count differ by up to half."""
    assert reconnect_delay(3, 0.0) == 2.0
    assert reconnect_delay(3, 1.0) == 4.0


def test_reconnects_rotate_through_the_nodes() -> None:
    """After node i the next attempt goes to node i+1, wrapping around: a lost node is
    retried only after every other one."""
    assert [next_node(i, 3) for i in range(3)] == [1, 2, 0]
    assert next_node(0, 1) == 0


async def test_connection_starts_at_the_given_node() -> None:
    """The initial connect's retries start at successive nodes (attempt number)."""
    urls = [URL("amqp://u:pw@a:1/"), URL("amqp://u:pw@b:2/"), URL("amqp://u:pw@c:3/")]
    connection = JitteredRobustConnection(urls, start=4)
    assert connection.url == urls[1]
    assert connection.masked_url == "amqp://u:***@b:2/"
    await connection.close()


async def test_every_attempt_after_the_first_goes_to_the_next_node() -> None:
    """aio-pika clears the transport before each attempt: the first stays on the start node,
    later ones rotate, and the pause it logs is the pause it sleeps."""
    urls = [URL("amqp://a/"), URL("amqp://b/"), URL("amqp://c/")]
    connection = JitteredRobustConnection(urls)
    seen = []
    for _ in range(4):
        connection.transport = None
        seen.append(connection.url)
        assert connection.reconnect_interval == connection.reconnect_interval
    assert seen == [urls[0], urls[1], urls[2], urls[0]]
    await connection.close()
