"""framework: asynchronous, message-buffered microservices on RabbitMQ that survive failures.

The public API is exactly these names (tests/unit/test_public_surface.py holds `__all__` to
this list); everything else may change between versions.

Writing a service:
    Bus                 the connection: send, publish, request, declare, send_many
    Worker              subclass it: `queue`, `prefetch`, `max_attempts`, `timeout`, `handle`
    Context             what a handler gets beside the message: publish, send, reply, ids
    Command, Event      the two kinds of message (pydantic models with a stable type name)
    Message             their common base
    Settings            every setting, from `FRAMEWORK_*` variables or keyword arguments
    RetryPolicy         attempts and jittered exponential backoff of a worker
    Replica             a local, event-fed copy of another service's data
    ApplyResult         what applying one event to a replica did
    instance_name       the per-process name of a replica's feed queue

Protecting what a handler calls:
    CircuitBreaker      fail fast while a dependency is down; defers without burning attempts
    BreakerState        closed, open or half-open
    CircuitOpenError    raised by an open breaker
    RetryOnOverload     retry sends refused as `Overloaded`, with backoff
    RateLimit           at most N calls per second to a dependency, shared through Redis
    RateLimited         raised when a call would wait too long (a RetryLater)
    RetryLater          raised by a handler: come back after N seconds, no attempt burnt

Results and errors:
    SendResult          one message's outcome in `send_many`
    FrameworkError      base of every error below
    ConfigurationError  a setting or declaration that cannot work
    InvalidSchedule     `send(delay=, not_before=)` that makes no schedule (a ConfigurationError)
    BrokerUnavailable   no broker node answered
    PublishFailed       a send or publish was not confirmed; subclasses say why:
    Unroutable          no queue is bound for it
    Overloaded          the target queue is full (back away and retry later)
    MessageRefused      the broker refused it
    MessageTooLarge     above the broker's max_message_size
    PublishTimeout      no confirm within the time bound
    SendManyFailed      some messages of a `send_many` were not confirmed
    PermanentError      raised by a handler: never retry, dead-letter now
    InvalidMessage      the message cannot be valid (a PermanentError)
    HandlerTimeout      a handler ran past its worker's `timeout`
    LeaseLost           raised by `ctx.heartbeat()`: another worker holds the message's key
    RequestTimeout      no reply to `Bus.request` in time
    RemoteError         the handler of a request failed; its error, as the reply
"""

from framework import _legacy
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
    RateLimited,
    RemoteError,
    RequestTimeout,
    RetryLater,
    SendManyFailed,
    Unroutable,
)
from framework.messages import Command, Event, Message
from framework.publish.scheduling import InvalidSchedule
from framework.publish.send_results import SendResult
from framework.publish.send_retry import RetryOnOverload
from framework.replica.feed import instance_name
from framework.replica.local import Replica
from framework.replica.store import ApplyResult
from framework.resilience.backoff import RetryPolicy
from framework.resilience.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from framework.resilience.rate_limit import RateLimit
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
    "InvalidSchedule",
    "LeaseLost",
    "Message",
    "MessageRefused",
    "MessageTooLarge",
    "Overloaded",
    "PermanentError",
    "PublishFailed",
    "PublishTimeout",
    "RateLimit",
    "RateLimited",
    "RemoteError",
    "Replica",
    "RequestTimeout",
    "RetryLater",
    "RetryOnOverload",
    "RetryPolicy",
    "SendManyFailed",
    "SendResult",
    "Settings",
    "Unroutable",
    "Worker",
    "instance_name",
]

_legacy.install()  # old module paths (framework.names, ...) still import
