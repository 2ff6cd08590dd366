"""framework: asynchronous, message-buffered microservices on RabbitMQ that survive failures."""

from framework.backoff import RetryPolicy
from framework.bus import Bus
from framework.context import Context
from framework.errors import (
    BrokerUnavailable,
    ConfigurationError,
    FrameworkError,
    HandlerTimeout,
    InvalidMessage,
    Overloaded,
    PermanentError,
    PublishFailed,
    PublishTimeout,
    Unroutable,
)
from framework.messages import Command, Event, Message
from framework.settings import Settings
from framework.worker import Worker

__all__ = [
    "BrokerUnavailable",
    "Bus",
    "Command",
    "ConfigurationError",
    "Context",
    "Event",
    "FrameworkError",
    "HandlerTimeout",
    "InvalidMessage",
    "Message",
    "Overloaded",
    "PermanentError",
    "PublishFailed",
    "PublishTimeout",
    "RetryPolicy",
    "Settings",
    "Unroutable",
    "Worker",
]
