"""Reading and validating a Worker subclass's declaration (pure; no broker)."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from framework.consume.ordering import ORDER_BUCKETS, Ordering, check_ordering, longest_hold
from framework.errors import ConfigurationError
from framework.messages import Message, is_command
from framework.resilience.backoff import RetryPolicy
from framework.wire import names
from framework.wire.envelope import KEYLESS_MODES, Keyless
from framework.wire.topology import QueueOptions, Topology, partitioned_topology, worker_topology

# RabbitMQ 3.x closes the channel of a delivery unacked for 30 minutes (consumer_timeout).
CONSUMER_TIMEOUT_LIMIT = 1800.0
# The shortest `queue_expires`: the delay queues of a live instance have no consumer, so only
# declaring them again (on reconnect and the bus's topology check, every 30 s) keeps them.
MIN_QUEUE_EXPIRES = 300.0
# The shortest `idempotency_lease`: renewed every lease/3 s, a shorter one only loads the store.
MIN_LEASE = 1.0

SETTINGS = (
    "queue",
    "prefetch",
    "max_attempts",
    "timeout",
    "retry_base_delay",
    "retry_max_delay",
    "retry_jitter",
    "retry_later_limit",
    "delivery_limit",
    "max_queue_length",
    "queue_expires",
    "idempotency_retention",
    "idempotency_lease",
    "ack_batch_size",
    "ack_max_delay",
    "shutdown_grace",
    "service",
    "breakers",
    "rate_limits",
    "publishes",
    "max_body_bytes",
    "keyless",
    "database",
    "ordered_by",
    "partitions",
)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the framework derives from a Worker subclass."""

    queue: str
    prefetch: int
    timeout: float
    shutdown_grace: float
    retention: float
    lease: float
    policy: RetryPolicy
    message_types: dict[str, type[Message]]
    topology: Topology
    max_body_bytes: int = 1024 * 1024
    keyless: Keyless = "reject"
    ordering: Ordering | None = None  # `ordered_by`: partition queues, retries in place


def check_spelling(namespace: dict[str, Any], owner: str) -> None:
    """Reject attributes that look like a misspelled setting (`prefech = 10`)."""
    for name in namespace:
        if name.startswith("_") or name in SETTINGS:
            continue
        close = difflib.get_close_matches(name, SETTINGS, n=1, cutoff=0.8)
        if close:
            raise ConfigurationError(
                f"{owner}.{name} is not a Worker setting; did you mean {close[0]!r}?"
            )


def handled_types(cls: type, handle_name: str = "handle") -> dict[str, type[Message]]:
    """The message types `handle` accepts, from its annotation (a type or a union)."""
    handle = getattr(cls, handle_name)
    try:
        hints = typing.get_type_hints(handle)
    except Exception as exc:
        raise ConfigurationError(
            f"{cls.__name__}.handle has annotations that cannot be resolved: {exc}"
        ) from exc
    params = [p for p in hints if p != "return"]
    annotation = hints.get(params[0]) if params else None
    if annotation is None:
        raise ConfigurationError(
            f"{cls.__name__}.handle(self, msg, ctx) must annotate msg with the message type "
            "it consumes, e.g. `async def handle(self, msg: PlaceOrder, ctx: Context)`"
        )
    candidates = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    found: dict[str, type[Message]] = {}
    for candidate in candidates:
        if not (isinstance(candidate, type) and issubclass(candidate, Message)):
            raise ConfigurationError(
                f"{cls.__name__}.handle consumes {candidate!r}, which is not a Command or Event"
            )
        found[candidate.type_name] = candidate
    return found


def build_spec(cls: type) -> WorkerSpec:
    """Validate `cls`'s settings and derive its spec; errors say what to change."""
    queue = getattr(cls, "queue", None)
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f'{cls.__name__} must set `queue = "name"`')
    if queue.endswith(".dlq") or ".retry." in queue:
        raise ConfigurationError(f"{cls.__name__}.queue {queue!r} clashes with companion names")
    prefetch = _positive_int(cls, "prefetch")
    timeout = _positive(cls, "timeout")
    if timeout >= CONSUMER_TIMEOUT_LIMIT:
        raise ConfigurationError(
            f"{cls.__name__}.timeout must stay below RabbitMQ's consumer_timeout "
            f"({CONSUMER_TIMEOUT_LIMIT:g}s)"
        )
    try:
        policy = RetryPolicy(
            max_attempts=_positive_int(cls, "max_attempts"),
            base_delay=_positive(cls, "retry_base_delay"),
            max_delay=_positive(cls, "retry_max_delay"),
            jitter=float(cls.retry_jitter),  # type: ignore[attr-defined]
            retry_later_limit=_retry_later_limit(cls),
        )
    except ValueError as exc:
        raise ConfigurationError(f"{cls.__name__}: {exc}") from exc
    max_length = cls.max_queue_length  # type: ignore[attr-defined]
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ConfigurationError(f"{cls.__name__}.max_queue_length must be a positive int or None")
    message_types = handled_types(cls)
    bindings = {
        name: names.COMMANDS_EXCHANGE if is_command(t) else names.EVENTS_EXCHANGE
        for name, t in message_types.items()
    }
    options = QueueOptions(_positive_int(cls, "delivery_limit"), max_length, _expires_ms(cls))
    ordering = _ordering(cls, message_types, policy, timeout)
    topology = (
        worker_topology(queue, bindings, policy, options)
        if ordering is None
        else partitioned_topology(queue, bindings, options, ordering.partitions, ORDER_BUCKETS)
    )
    return WorkerSpec(
        queue=queue,
        # ordered: one delivery in flight per partition queue (QoS is per consumer)
        prefetch=prefetch if ordering is None else 1,
        timeout=timeout,
        shutdown_grace=float(cls.shutdown_grace),  # type: ignore[attr-defined]
        retention=_positive(cls, "idempotency_retention"),
        lease=_lease(cls, timeout),
        policy=policy,
        message_types=message_types,
        topology=topology,
        max_body_bytes=_positive_int(cls, "max_body_bytes"),
        keyless=_keyless(cls),
        ordering=ordering,
    )


def _ordering(
    cls: type, message_types: dict[str, type[Message]], policy: RetryPolicy, timeout: float
) -> Ordering | None:
    """`ordered_by` / `partitions`, checked; an ordered worker retries in place, holding
    its delivery, so its retries must end before the broker's consumer timeout."""
    ordering = check_ordering(
        cls.__name__,
        getattr(cls, "ordered_by", None),
        getattr(cls, "partitions", None),
        message_types,
    )
    if ordering is None:
        return None
    if _set_by_user(cls, "prefetch") and getattr(cls, "prefetch", None) != 1:
        raise ConfigurationError(
            f"{cls.__name__} is ordered: it handles one message per partition at a time, so "
            "`prefetch` does not apply; remove it and set `partitions` for more parallelism"
        )
    hold = longest_hold(policy.max_attempts, timeout, lambda failed: policy.delay(failed, _top))
    if hold >= CONSUMER_TIMEOUT_LIMIT:
        raise ConfigurationError(
            f"{cls.__name__} is ordered, so it retries in place, holding the delivery: "
            f"max_attempts x timeout plus the retry delays come to {hold:g}s, over RabbitMQ's "
            f"consumer_timeout ({CONSUMER_TIMEOUT_LIMIT:g}s); lower max_attempts, timeout or "
            "retry_max_delay"
        )
    return ordering


def _top() -> float:
    return 1.0


def _set_by_user(cls: type, name: str) -> bool:
    """Whether `name` comes from a class of the user's, not the framework's Worker."""
    owner = next((k for k in cls.__mro__ if name in vars(k)), None)
    return owner is not None and owner.__module__ != "framework.worker"


def _expires_ms(cls: type) -> int | None:
    """`queue_expires` in milliseconds (None: the queue never expires)."""
    if getattr(cls, "queue_expires", None) is None:
        return None
    expires = _positive(cls, "queue_expires")
    if expires < MIN_QUEUE_EXPIRES:
        raise ConfigurationError(
            f"{cls.__name__}.queue_expires must be at least {MIN_QUEUE_EXPIRES:g}s "
            f"(got {expires:g}s): a queue of a live instance must outlast a reconnect"
        )
    return int(expires * 1000)


def _keyless(cls: type) -> Keyless:
    value = getattr(cls, "keyless", "reject")
    for mode in KEYLESS_MODES:
        if value == mode:
            return mode
    raise ConfigurationError(
        f"{cls.__name__}.keyless must be one of {', '.join(map(repr, KEYLESS_MODES))}, "
        f'got {value!r} ("content" keys a message without message_id by its type and body)'
    )


def _retry_later_limit(cls: type) -> int:
    value = getattr(cls, "retry_later_limit", 20)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"{cls.__name__}.retry_later_limit must be an int >= 0 (how many RetryLater a "
            f"message may take; 0: dead-letter at the first), got {value!r}"
        )
    return value


def _positive(cls: type, name: str) -> float:
    value = getattr(cls, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{cls.__name__}.{name} must be a positive number, got {value!r}")
    return float(value)


def _positive_int(cls: type, name: str) -> int:
    value = getattr(cls, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{cls.__name__}.{name} must be a positive integer, got {value!r}")
    return value


def _lease(cls: type, timeout: float) -> float:
    """How long a claim blocks other workers after its holder stops renewing it.

    Default `timeout + 30 s`: the key stays held for the whole handler even if every
    renewal fails. A shorter lease (below `timeout`, for a long-running handler) frees the
    key of a crashed worker sooner and is kept only by renewals (every lease/3 s, from a
    thread of its own with a shared store; `ctx.heartbeat()` renews a late one): a store
    unreachable for longer than the lease lets a redelivered copy run (its handler's
    `ctx.heartbeat()` raises `LeaseLost`, and its completion is fenced).
    """
    if getattr(cls, "idempotency_lease", None) is None:
        return timeout + 30.0
    lease = _positive(cls, "idempotency_lease")
    if lease < MIN_LEASE:
        raise ConfigurationError(
            f"{cls.__name__}.idempotency_lease must be at least {MIN_LEASE:g}s (got {lease:g}s): "
            "it is renewed every lease/3 s while the handler runs"
        )
    return lease
