"""Order per key, the pure parts: the key and its bucket, partition choice, the partitioned
topology, the validation of an ordered worker and the in-place retry decision."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import pytest

from framework import Command, ConfigurationError, Context, Worker
from framework.consume.decisions import Ack, DeadLetter, Reason, Retry
from framework.consume.ordering import (
    ORDER_BUCKETS,
    consumer_priorities,
    fnv1a_32,
    longest_hold,
    order_bucket,
    order_headers,
    order_key,
    partition_of,
    retry_in_place,
)
from framework.consume.worker_spec import build_spec
from framework.publish.outgoing import outgoing_envelope
from framework.wire import names
from framework.wire.envelope import Envelope
from framework.wire.topology import QueueOptions, partitioned_topology


class Deposit(Command):
    type_name = "tests.ordering.Deposit"
    ordered_by: ClassVar[str] = "account"
    account: str
    cents: int


class Numbered(Command):
    type_name = "tests.ordering.Numbered"
    ordered_by: ClassVar[str] = "number"
    number: int


class Unordered(Command):
    type_name = "tests.ordering.Unordered"
    account: str


def test_fnv1a_matches_the_published_test_vectors() -> None:
    """The hash is standard FNV-1a 32, so any client can compute the bucket."""
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_bucket_is_the_hash_of_the_utf8_key_modulo_256() -> None:
    """The bucket contract: FNV-1a 32 of the key's UTF-8 bytes, modulo 256."""
    assert ORDER_BUCKETS == 256
    assert order_bucket("foobar") == 0xBF9CF968 % 256
    assert order_bucket("Zürich") == fnv1a_32("Zürich".encode()) % 256


def test_partition_is_the_bucket_modulo_the_partition_count() -> None:
    """Buckets map onto a worker's partitions; every partition gets some keys."""
    assert partition_of(17, 8) == 1
    assert partition_of(17, 1) == 0
    spread = Counter(partition_of(order_bucket(f"customer-{i}"), 8) for i in range(2000))
    assert set(spread) == set(range(8))
    assert max(spread.values()) < 2 * min(spread.values())


def test_key_is_the_ordering_field_as_text() -> None:
    """The key is the field named by the class's `ordered_by`, as text; None if unordered."""
    assert order_key(Deposit(account="acc-1", cents=5)) == "acc-1"
    assert order_key(Numbered(number=42)) == "42"
    assert order_key(Unordered(account="acc-1")) is None


def test_sent_envelope_carries_key_and_bucket_headers() -> None:
    """Every message the framework sends of an ordered class carries both headers."""
    envelope, _ = outgoing_envelope(Deposit(account="acc-1", cents=5), "k", app_id="tests")
    assert envelope.headers == {
        names.ORDER_KEY: "acc-1",
        names.ORDER_BUCKET: str(order_bucket("acc-1")),
    }
    assert order_headers(Unordered(account="x")) == {}


def test_ordered_by_must_name_a_field_of_the_message() -> None:
    """A typo in the message's `ordered_by` fails at class definition."""
    with pytest.raises(TypeError, match="not one of its fields"):

        class Broken(Command):
            ordered_by: ClassVar[str] = "acount"
            account: str


def test_partitioned_topology_routes_every_bucket_to_one_single_active_partition() -> None:
    """Q.p0..Q.p3 are quorum queues with single-active-consumer; each of the 256 buckets is
    bound to partition bucket % 4; the handled types and Q.moves feed Q.partitions."""
    topology = partitioned_topology(
        "acc", {"Deposit": names.COMMANDS_EXCHANGE}, QueueOptions(delivery_limit=5), 4, 256
    )
    queues = {q.name: dict(q.arguments) for q in topology.queues}
    assert set(queues) == {"acc.p0", "acc.p1", "acc.p2", "acc.p3", "acc.dlq"}
    for p in range(4):
        args = queues[f"acc.p{p}"]
        assert args["x-single-active-consumer"] is True
        assert args["x-queue-type"] == "quorum"
        assert args["x-delivery-limit"] == 5
        assert args["x-dead-letter-routing-key"] == "acc.dlq"
    routes = {dict(b.arguments)[names.ORDER_BUCKET]: b.queue for b in topology.partition_bindings}
    assert len(routes) == 256
    assert all(queue == f"acc.p{int(bucket) % 4}" for bucket, queue in routes.items())
    assert all(b.exchange == "acc.partitions" for b in topology.partition_bindings)
    links = {(e.source, e.routing_key) for e in topology.exchange_bindings}
    assert links == {(names.COMMANDS_EXCHANGE, "Deposit"), ("acc.moves", "acc")}
    assert [(r.name, r.kind) for r in topology.routers] == [("acc.partitions", "headers")]
    assert not any(".retry." in q for q in queues)  # retries happen in place


def _worker(**settings: object) -> type[Worker]:
    class Accounts(Worker):
        queue = "accounts"

        async def handle(self, msg: Deposit, ctx: Context) -> None:
            return None

    for name, value in settings.items():
        setattr(Accounts, name, value)
    return Accounts


def test_ordered_worker_has_partitions_and_one_delivery_per_partition() -> None:
    """`ordered_by` splits the queue into `partitions` queues consumed with prefetch 1."""
    spec = build_spec(_worker(ordered_by="account", partitions=3))
    assert spec.ordering is not None
    assert spec.ordering.partitions == 3
    assert spec.prefetch == 1
    assert [q.name for q in spec.topology.queues] == [
        "accounts.p0",
        "accounts.p1",
        "accounts.p2",
        "accounts.dlq",
    ]


def test_prefetch_on_an_ordered_worker_is_refused() -> None:
    """`prefetch` cannot apply (one per partition): an error rather than silently ignored."""
    with pytest.raises(ConfigurationError, match="prefetch` does not apply"):
        build_spec(_worker(ordered_by="account", prefetch=50))


def test_worker_ordering_must_match_the_message_class() -> None:
    """The worker's field must be the one its messages declare, or senders would not set it."""
    expected = 'declare `ordered_by: ClassVar\\[str\\] = "cents"'
    with pytest.raises(ConfigurationError, match=expected):
        build_spec(_worker(ordered_by="cents"))


@pytest.mark.parametrize("partitions", [0, 257, "8", True])
def test_partition_count_is_checked(partitions: object) -> None:
    """1 to 256 partitions (a partition per bucket at most)."""
    with pytest.raises(ConfigurationError, match="partitions must be an integer from 1 to 256"):
        build_spec(_worker(ordered_by="account", partitions=partitions))


def test_in_place_retries_must_end_before_the_consumer_timeout() -> None:
    """Retrying in place holds the delivery: all attempts must fit in the broker's timeout."""
    with pytest.raises(ConfigurationError, match="retries in place"):
        build_spec(_worker(ordered_by="account", max_attempts=10, timeout=200.0))
    assert longest_hold(3, 10.0, lambda failed: 2.0**failed) == 30.0 + 2.0 + 4.0


def _envelope(**headers: object) -> Envelope:
    return Envelope(message_id="m", type="t", body=b"{}", correlation_id="c", headers=headers)


def test_a_retry_is_run_again_in_place_as_the_next_attempt() -> None:
    """A failed attempt waits its delay and runs again, carrying the error like a copy."""
    retry = Retry(delay_ms=1500, tier_ms=1000, next_attempt=2, error="boom")
    again = retry_in_place(retry, _envelope(**{names.DEFERRALS: 3, "x-user": "kept"}))
    assert again is not None
    wait, following = again
    assert wait == 1.5
    assert following.attempt == 2
    assert following.headers == {names.ERROR: "boom", "x-user": "kept"}


def test_a_deferral_keeps_the_attempt_and_counts_deferrals() -> None:
    """A deferral (breaker open, store down) is also waited out in place, same attempt."""
    deferral = Retry(delay_ms=200, tier_ms=100, next_attempt=1, error="open", deferrals=2)
    again = retry_in_place(deferral, _envelope())
    assert again is not None
    assert again[1].attempt == 1
    assert again[1].headers[names.DEFERRALS] == 2


@pytest.mark.parametrize(
    "settlement", [Ack(), Ack(duplicate=True), DeadLetter(Reason.EXHAUSTED, "boom", 5)]
)
def test_acks_and_dead_letters_are_settled_as_usual(settlement: Ack | DeadLetter) -> None:
    """Only retries stay in place: a message dead-lettered leaves its key's order."""
    assert retry_in_place(settlement, _envelope()) is None


def _fixed(*values: float) -> Callable[[], float]:
    numbers = iter(values)
    return lambda: next(numbers)


def test_consumer_priorities_rotate_the_partitions_by_a_random_offset() -> None:
    """A replica ranks the partitions in a rotation of its random offset, ties broken."""
    priorities = consumer_priorities(4, _fixed(0.5, 0.0, 0.0, 0.0, 0.0))  # offset 2
    assert [sorted(priorities).index(p) for p in priorities] == [2, 3, 0, 1]
    assert all(p >= 1 for p in priorities)


def test_two_replicas_with_different_offsets_share_the_partitions() -> None:
    """Each is the highest on some partitions: on RabbitMQ 4.x both are active."""
    first = consumer_priorities(8, _fixed(0.0, *[0.5] * 8))
    second = consumer_priorities(8, _fixed(0.5, *[0.5] * 8))
    winners = ["first" if a > b else "second" for a, b in zip(first, second, strict=True)]
    assert set(winners) == {"first", "second"}
