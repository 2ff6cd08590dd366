"""framework: asynchronous, message-buffered microservices on RabbitMQ that survive failures."""

from framework.backoff import RetryPolicy
from framework.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from framework.bus import Bus
from framework.context import Context
from framework.errors import (
    BrokerUnavailable,
    ConfigurationError,
    FrameworkError,
    HandlerTimeout,
    InvalidMessage,
    LeaseLost,
    MessageRefused,
    MessageTooLarge,
    Overloaded,
    PermanentError,
    PublishFailed,
    PublishTimeout,
    RemoteError,
    RequestTimeout,
    SendManyFailed,
    Unroutable,
)
from framework.messages import Command, Event, Message
from framework.replica import Replica
from framework.replica_feed import instance_name
from framework.replica_store import ApplyResult
from framework.send_batch import SendResult
from framework.send_retry import RetryOnOverload
from framework.settings import Settings
from framework.worker import Worker

__all__ = [
    "ApplyResult",
    "BreakerState",
    "BrokerUnavailable",
    "Bus",
    "CircuitBreaker",
    "CircuitOpenError",
    "Command",
    "ConfigurationError",
    "Context",
    "Event",
    "FrameworkError",
    "HandlerTimeout",
    "InvalidMessage",
    "LeaseLost",
    "Message",
    "MessageRefused",
    "MessageTooLarge",
    "Overloaded",
    "PermanentError",
    "PublishFailed",
    "PublishTimeout",
    "RemoteError",
    "Replica",
    "RequestTimeout",
    "RetryOnOverload",
    "RetryPolicy",
    "SendManyFailed",
    "SendResult",
    "Settings",
    "Unroutable",
    "Worker",
    "instance_name",
]
