"""Order per key: which partition a message belongs to, and retrying in place.

A message class names the field that orders it (`ordered_by: ClassVar[str] = "customer_id"`);
the sender puts that field's value in `fw-order-key` and its bucket in `fw-order-bucket`.
The bucket is FNV-1a (32 bit) of the key's UTF-8 bytes modulo `ORDER_BUCKETS`, so any client
can compute it; the bucket space is fixed, and each worker maps buckets to its own number of
partitions (`bucket % partitions`), so senders never need to know the partition count.

An ordered worker consumes each partition queue with single-active-consumer and one
delivery in flight, so a partition is handled serially, in queue order, by one replica at
a time. A failed attempt therefore cannot go through the delay queues (later messages of its
key would overtake it): it is retried *in place*, holding its delivery and so its partition,
until it succeeds or is dead-lettered. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from framework.consume.decisions import Retry, Settlement
from framework.errors import ConfigurationError
from framework.messages import Message
from framework.wire import names
from framework.wire.envelope import Envelope
from framework.wire.header_limits import bound_text

ORDER_BUCKETS = 256  # part of the wire contract: never change it
MAX_PARTITIONS = ORDER_BUCKETS
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash (http://www.isthe.com/chongo/tech/comp/fnv/)."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def order_bucket(key: str) -> int:
    """The bucket of an order key: FNV-1a 32 of its UTF-8 bytes, modulo `ORDER_BUCKETS`."""
    return fnv1a_32(key.encode("utf-8")) % ORDER_BUCKETS


def partition_of(bucket: int, partitions: int) -> int:
    """The partition (0..partitions-1) a worker with `partitions` gives `bucket`."""
    return bucket % partitions


def order_key(message: Message) -> str | None:
    """The message's order key (its `ordered_by` field as text), None if not ordered."""
    field = type(message).ordered_by
    if field is None:
        return None
    value: Any = getattr(message, field)
    return value if isinstance(value, str) else str(value)


def order_headers(message: Message) -> dict[str, str]:
    """The headers that route an ordered message to its partition (none if not ordered)."""
    key = order_key(message)
    if key is None:
        return {}
    return {names.ORDER_KEY: key, names.ORDER_BUCKET: str(order_bucket(key))}


@dataclass(frozen=True, slots=True)
class Ordering:
    """An ordered worker's settings: the field its messages are ordered by, and how many
    partition queues (each handled serially) its queue is split into."""

    ordered_by: str
    partitions: int


def check_ordering(
    owner: str, ordered_by: object, partitions: object, message_types: dict[str, type[Message]]
) -> Ordering | None:
    """Validate a worker's `ordered_by` / `partitions` against the messages it handles."""
    if ordered_by is None:
        return None
    if not isinstance(ordered_by, str) or not ordered_by:
        raise ConfigurationError(f"{owner}.ordered_by must be a field name, got {ordered_by!r}")
    if (
        isinstance(partitions, bool)
        or not isinstance(partitions, int)
        or not 1 <= partitions <= MAX_PARTITIONS
    ):
        raise ConfigurationError(
            f"{owner}.partitions must be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}"
        )
    for type_name, message_type in sorted(message_types.items()):
        if message_type.ordered_by != ordered_by:
            raise ConfigurationError(
                f"{owner}.ordered_by is {ordered_by!r} but {type_name} declares "
                f"ordered_by={message_type.ordered_by!r}: senders set the order key from the "
                f'message class, so declare `ordered_by: ClassVar[str] = "{ordered_by}"` on '
                f"{message_type.__name__}"
            )
    return Ordering(ordered_by, partitions)


def retry_in_place(settlement: Settlement, envelope: Envelope) -> tuple[float, Envelope] | None:
    """For an ordered worker: how long to wait (s) and the envelope of the next attempt when
    `settlement` is a retry or a deferral (None: settle it as usual, ack or dead-letter).

    The next attempt carries what the delay queue's copy would have: the attempt number,
    the last error in `fw-error` and the deferral count."""
    if not isinstance(settlement, Retry):
        return None
    headers = {**envelope.headers, names.ERROR: bound_text(settlement.error)}
    if settlement.deferrals is not None:
        headers[names.DEFERRALS] = settlement.deferrals
    else:
        headers.pop(names.DEFERRALS, None)
    following = replace(envelope, attempt=settlement.next_attempt, headers=headers)
    return settlement.delay_ms / 1000, following


def consumer_priorities(partitions: int, rand: Callable[[], float]) -> tuple[int, ...]:
    """One replica's `x-priority` for each partition's consumer.

    RabbitMQ 4.x makes the highest-priority consumer of a single-active-consumer quorum
    queue the active one (switching once the current one has settled what it holds, so
    order is kept); 3.x ignores the priority and keeps the first subscriber. A replica's
    priorities are a rotation of 0..partitions-1 by a random offset, times 1000, plus a
    random tiebreak: two replicas with different offsets share the partitions between them
    (each is highest on some), and a replica joining later takes some partitions over."""
    offset = int(rand() * partitions) % partitions
    return tuple(
        ((p + offset) % partitions) * 1000 + 1 + int(rand() * 999) for p in range(partitions)
    )


def longest_hold(max_attempts: int, timeout: float, delay: Callable[[int], float]) -> float:
    """Seconds an ordered worker may hold one delivery retrying it in place: every attempt
    running to its timeout, with the longest backoff (`delay(failed_attempt)`) between."""
    return max_attempts * timeout + sum(delay(failed) for failed in range(1, max_attempts))
