"""Topology as data: a pure description of exchanges, queues and bindings for a worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from framework.resilience.backoff import RetryPolicy, tier_cap_ms
from framework.wire import names

ExchangeKind = Literal["direct", "topic", "headers"]


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    kind: ExchangeKind


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    # accepted instead when the queue already exists with these (an earlier version's)
    fallback: Mapping[str, Any] | None = None

    @property
    def legacy_arguments(self) -> Mapping[str, Any] | None:
        """The arguments an older framework declared this queue with: dead-lettering through
        the default exchange instead of the queue's moves exchange (same routing key).
        None if the queue does not dead-letter."""
        if "x-dead-letter-exchange" not in self.arguments:
            return None
        return {**self.arguments, "x-dead-letter-exchange": ""}

    def accepted_arguments(self) -> tuple[Mapping[str, Any], ...]:
        """The argument sets to declare with, in order: the current ones, then those of
        earlier framework versions that existing queues may carry."""
        older = (self.legacy_arguments, self.fallback)
        return (self.arguments, *(a for a in older if a is not None and a != self.arguments))


# A DLQ's own delivery limit. `framework dlq list` reads dead letters and returns them, and
# every return counts as a delivery; RabbitMQ 4.x gives a quorum queue that sets no limit a
# default of 20, and a DLQ has no dead-letter target: its 21st listing would drop the
# message. (3.x has no default limit.)
DLQ_DELIVERY_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class BindingSpec:
    queue: str
    exchange: str
    routing_key: str
    # binding arguments (a headers exchange matches on them), as pairs: the spec stays hashable
    arguments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ExchangeBindingSpec:
    """An exchange-to-exchange binding: `source` passes messages with `routing_key` on to
    `destination` (an ordered worker's partitions exchange)."""

    destination: str
    source: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Topology:
    """`exchanges` are the shared ones (created by an administrator, declared passively);
    `moves` bind a worker's own direct exchange (`Q.moves`) to its queue, retry and
    dead-letter queues, each with the queue's name as routing key (declared by the worker
    itself; the framework's moves and the broker's dead-lettering both go through it)."""

    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()
    moves: tuple[BindingSpec, ...] = ()
    # the queues expire when unused (a queue of one instance): the moves exchange is then
    # auto-delete, so it goes with the last of them instead of staying behind
    expiring: bool = False
    # the scheduled-send countdown (framework.publish.scheduling), declared by schedule_declare
    schedule: bool = False
    # an ordered worker's own headers exchange (`Q.partitions`), what feeds it, and the
    # bindings of its partition queues to it by bucket (framework.consume.ordering)
    routers: tuple[ExchangeSpec, ...] = ()
    exchange_bindings: tuple[ExchangeBindingSpec, ...] = ()
    partition_bindings: tuple[BindingSpec, ...] = ()

    def __add__(self, other: Topology) -> Topology:
        return Topology(
            _unique(self.exchanges + other.exchanges),
            _unique(self.queues + other.queues),
            _unique(self.bindings + other.bindings),
            _unique(self.moves + other.moves),
            self.expiring or other.expiring,
            self.schedule or other.schedule,
            _unique(self.routers + other.routers),
            _unique(self.exchange_bindings + other.exchange_bindings),
            _unique(self.partition_bindings + other.partition_bindings),
        )

    @property
    def own_exchanges(self) -> tuple[str, ...]:
        """The moves exchanges (direct, durable) this topology declares for itself."""
        return tuple(dict.fromkeys(b.exchange for b in self.moves))


_T = TypeVar("_T")


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    """Keep the first of each name (queues, exchanges) or each equal binding."""
    seen: dict[object, _T] = {}
    for item in items:
        seen.setdefault(getattr(item, "name", item), item)
    return tuple(seen.values())


EXCHANGES = Topology(
    exchanges=(
        ExchangeSpec(names.COMMANDS_EXCHANGE, "direct"),
        ExchangeSpec(names.EVENTS_EXCHANGE, "topic"),
    )
)


# the stages that hold scheduled sends: shared by the vhost, declared by a bus before its
# first scheduled send (`Bus.send(delay=...)`)
SCHEDULE = EXCHANGES + Topology(schedule=True)


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """Per-queue settings a worker declares."""

    delivery_limit: int = 10
    max_length: int | None = None
    # milliseconds unused (no consumer, not declared again) before the broker deletes the
    # queue, its DLQ and its delay queues: only for a queue of one instance, never shared
    expires_ms: int | None = None


def worker_topology(
    queue: str,
    bindings: Mapping[str, str],
    policy: RetryPolicy,
    options: QueueOptions,
) -> Topology:
    """Everything queue `queue` needs: itself, its DLQ, its delay tiers and its bindings.

    `bindings` maps a message type name to the exchange it arrives on.
    """
    dlq = names.dlq_name(queue)
    moves = names.moves_exchange(queue)
    main_args = _consumed_queue_arguments(queue, options)
    expiry = _expiry(options)
    tiers = policy.tiers_ms()
    retry_queues = tuple(
        QueueSpec(
            names.retry_queue_name(queue, tier),
            {
                "x-queue-type": "quorum",
                "x-message-ttl": tier_cap_ms(tier, tiers),
                "x-dead-letter-exchange": moves,
                "x-dead-letter-routing-key": queue,
                "x-overflow": "reject-publish",
                "x-dead-letter-strategy": "at-least-once",
                **expiry,
            },
        )
        for tier in tiers
    )
    return EXCHANGES + Topology(
        queues=(QueueSpec(queue, main_args), _dlq_spec(queue, options), *retry_queues),
        bindings=tuple(
            BindingSpec(queue, exchange, type_name)
            for type_name, exchange in sorted(bindings.items())
        ),
        moves=tuple(
            BindingSpec(q.name, moves, q.name)
            for q in (QueueSpec(queue), QueueSpec(dlq), *retry_queues)
        ),
        expiring=options.expires_ms is not None,
    )


def _expiry(options: QueueOptions) -> dict[str, Any]:
    return {} if options.expires_ms is None else {"x-expires": options.expires_ms}


def _consumed_queue_arguments(queue: str, options: QueueOptions) -> dict[str, Any]:
    """The arguments of a queue the worker consumes (its queue, or a partition of it)."""
    # Dead letters go through the queue's own moves exchange, not the default one: declaring
    # a queue whose dead-letter exchange is "" needs write permission on amq.default, which
    # would let the service publish into every queue of the vhost.
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": options.delivery_limit,
        "x-dead-letter-exchange": names.moves_exchange(queue),
        "x-dead-letter-routing-key": names.dlq_name(queue),
        **_expiry(options),
    }
    if options.max_length is not None:
        arguments["x-max-length"] = options.max_length
        arguments["x-overflow"] = "reject-publish"
        arguments["x-dead-letter-strategy"] = "at-least-once"
    return arguments


def _dlq_spec(queue: str, options: QueueOptions) -> QueueSpec:
    expiry = _expiry(options)
    return QueueSpec(
        names.dlq_name(queue),
        {"x-queue-type": "quorum", "x-delivery-limit": DLQ_DELIVERY_LIMIT, **expiry},
        fallback=None if expiry else {"x-queue-type": "quorum"},  # DLQs before the limit
    )


def partitioned_topology(
    queue: str,
    bindings: Mapping[str, str],
    options: QueueOptions,
    partitions: int,
    buckets: int,
) -> Topology:
    """An ordered worker's queue `queue` split into `partitions` queues `Q.p0`..: each a
    quorum queue with single-active-consumer, fed by the headers exchange `Q.partitions`,
    which routes bucket `b` (the `fw-order-bucket` header, `framework.consume.ordering`) to
    partition `b % partitions`. The commands/events exchanges pass the handled types on to
    it, and so does `Q.moves` for routing key `Q` (messages moved back, e.g. replayed).
    No delay queues: an ordered worker retries in place. Same DLQ as an unordered worker.
    """
    router = names.partitions_exchange(queue)
    moves = names.moves_exchange(queue)
    arguments = {**_consumed_queue_arguments(queue, options), "x-single-active-consumer": True}
    parts = tuple(
        QueueSpec(names.partition_queue_name(queue, p), arguments) for p in range(partitions)
    )
    dlq = _dlq_spec(queue, options)
    return EXCHANGES + Topology(
        queues=(*parts, dlq),
        moves=(BindingSpec(dlq.name, moves, dlq.name),),
        expiring=options.expires_ms is not None,
        routers=(ExchangeSpec(router, "headers"),),
        exchange_bindings=(
            *(
                ExchangeBindingSpec(router, exchange, type_name)
                for type_name, exchange in sorted(bindings.items())
            ),
            ExchangeBindingSpec(router, moves, queue),
        ),
        partition_bindings=tuple(
            BindingSpec(
                parts[bucket % partitions].name,
                router,
                "",
                (("x-match", "all"), (names.ORDER_BUCKET, str(bucket))),
            )
            for bucket in range(buckets)
        ),
    )
