"""A replica fed on every instance: a queue of its own per process, bound to the replica's
event type, expiring once the process is gone; every instance gets every event."""

from __future__ import annotations

import os
import re

import pytest

from framework import ConfigurationError, Event, Replica, Settings
from framework.consume.worker_spec import build_spec
from framework.replica.feed import DEFAULT_EXPIRES, feed_worker, instance_name, instance_queue
from framework.testing import MemoryBroker, MemoryBus


class Price(Event):
    type_name = "tests.feed.Price.v1"
    sku: str
    version: int


def prices() -> Replica[Price]:
    return Replica("prices", Price, key=lambda p: p.sku, version=lambda p: p.version)


def test_feed_consumes_the_replicas_event_type_on_an_expiring_instance_queue() -> None:
    """`{queue}.{instance}`, bound to the replica's model; its queues expire."""
    spec = build_spec(feed_worker(prices(), "shop.prices", instance="node-1"))
    assert spec.queue == "shop.prices.node-1"
    assert spec.message_types == {Price.type_name: Price}
    assert spec.topology.expiring
    assert spec.topology.queues[0].arguments["x-expires"] == int(DEFAULT_EXPIRES * 1000)


def test_instance_names_are_one_safe_name_part() -> None:
    """Host name and pid by default; dots and other separators become dashes."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", instance_name())
    assert instance_name().endswith(f"-{os.getpid()}")
    assert instance_queue("shop.prices", "pod.x/1") == "shop.prices.pod-x-1"
    with pytest.raises(ConfigurationError, match="no letter or digit"):
        instance_queue("shop.prices", "..")


def test_feeding_refuses_a_bus_that_would_let_its_delay_queues_expire() -> None:
    """Only the topology check re-declares consumer-less queues: it must run, often enough."""
    for interval in (0.0, DEFAULT_EXPIRES):
        bus = MemoryBus(settings=Settings(topology_check_interval=interval))
        with pytest.raises(ConfigurationError, match="FRAMEWORK_TOPOLOGY_CHECK_INTERVAL"):
            prices().feeding(bus, "shop.prices", instance="a")


async def test_every_instance_gets_every_event() -> None:
    """Two processes (buses on one broker), each feeding its own replica: both get all."""
    broker = MemoryBroker()
    async with (
        MemoryBus(service="shop", broker=broker) as first,
        MemoryBus(service="shop", broker=broker) as second,
    ):
        replicas = {"a": prices(), "b": prices()}
        async with (
            replicas["a"].feeding(first, "shop.prices", instance="a") as feed_a,
            replicas["b"].feeding(second, "shop.prices", instance="b"),
        ):
            assert feed_a.queue == "shop.prices.a"
            for n in range(10):
                await first.publish(Price(sku=f"s{n}", version=1))
            await first.drain()
        assert {name: len(r) for name, r in replicas.items()} == {"a": 10, "b": 10}
