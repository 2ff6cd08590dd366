"""Helpers for testing services and the framework itself.

`MemoryBus` runs workers in process with the Bus API and semantics (no broker);
`BrokerAdmin` pokes a real RabbitMQ. The pytest plugin (`framework.testing.pytest_plugin`)
turns both into fixtures.
"""

from framework.testing.broker import BrokerAdmin, amqp_url_from_env_or_container
from framework.testing.memory_broker import MemoryBroker, StoredMessage
from framework.testing.memory_bus import MemoryBus, Published
from framework.testing.waiting import eventually

__all__ = [
    "BrokerAdmin",
    "MemoryBroker",
    "MemoryBus",
    "Published",
    "StoredMessage",
    "amqp_url_from_env_or_container",
    "eventually",
]
