"""Topology is data: what a worker queue needs, derived without a broker."""

from __future__ import annotations

from framework.resilience.backoff import RetryPolicy
from framework.wire import names
from framework.wire.declare import QueueArgumentsDiffer
from framework.wire.topology import DLQ_DELIVERY_LIMIT, QueueOptions, worker_topology

POLICY = RetryPolicy(base_delay=1.0, max_delay=4.0)


def _queues(max_length: int | None = None) -> dict[str, dict[str, object]]:
    topology = worker_topology(
        "orders",
        {"PlaceOrder": names.COMMANDS_EXCHANGE},
        POLICY,
        QueueOptions(delivery_limit=7, max_length=max_length),
    )
    return {q.name: dict(q.arguments) for q in topology.queues}


def _moves() -> set[tuple[str, str, str]]:
    topology = worker_topology("orders", {}, POLICY, QueueOptions())
    return {(b.queue, b.exchange, b.routing_key) for b in topology.moves}


def test_main_queue_is_quorum_with_delivery_limit_and_dlq() -> None:
    """The worker queue is quorum, has a delivery limit and dead-letters into Q.dlq."""
    args = _queues()["orders"]
    assert args["x-queue-type"] == "quorum"
    assert args["x-delivery-limit"] == 7
    assert args["x-dead-letter-exchange"] == "orders.moves"
    assert args["x-dead-letter-routing-key"] == "orders.dlq"
    assert "x-max-length" not in args
    assert ("orders.dlq", "orders.moves", "orders.dlq") in _moves()


def test_max_length_sheds_with_reject_publish() -> None:
    """A bounded queue rejects publishes (and dead-letters at least once)."""
    args = _queues(max_length=100)["orders"]
    assert args["x-max-length"] == 100
    assert args["x-overflow"] == "reject-publish"
    assert args["x-dead-letter-strategy"] == "at-least-once"


def test_retry_tiers_dead_letter_back_to_queue() -> None:
    """Each delay tier caps its TTL and dead-letters back into the worker queue."""
    queues = _queues()
    assert set(queues) == {
        "orders",
        "orders.dlq",
        "orders.retry.1s",
        "orders.retry.2s",
        "orders.retry.4s",
    }
    for tier, cap in (("1s", 2000), ("2s", 4000), ("4s", 8000)):
        args = queues[f"orders.retry.{tier}"]
        assert args["x-message-ttl"] == cap
        assert args["x-dead-letter-exchange"] == "orders.moves"
        assert args["x-dead-letter-routing-key"] == "orders"
    assert ("orders", "orders.moves", "orders") in _moves()


def test_bindings_route_by_type_name() -> None:
    """Commands bind on the commands exchange with the type name as routing key."""
    topology = worker_topology(
        "orders", {"PlaceOrder": names.COMMANDS_EXCHANGE}, POLICY, QueueOptions()
    )
    [binding] = topology.bindings
    assert (binding.queue, binding.exchange, binding.routing_key) == (
        "orders",
        names.COMMANDS_EXCHANGE,
        "PlaceOrder",
    )
    assert {e.name for e in topology.exchanges} == {names.COMMANDS_EXCHANGE, names.EVENTS_EXCHANGE}


def test_names_of_companions() -> None:
    """Companion queue names map back to their owner."""
    assert names.owner_queue("orders.retry.4s") == "orders"
    assert names.owner_queue("orders.dlq") == "orders"
    assert names.is_companion_queue("orders.dlq") and not names.is_companion_queue("orders")
    assert names.format_delay(1500) == "1500ms"


def test_moves_exchange_reaches_only_the_workers_own_queues() -> None:
    """orders.moves binds the queue, its DLQ and every tier, each by its own name, and is
    the only exchange besides the shared ones (declared by the worker, not an admin)."""
    topology = worker_topology("orders", {}, POLICY, QueueOptions())
    assert _moves() == {(q, "orders.moves", q) for q in _queues()}
    assert topology.own_exchanges == ("orders.moves",)


def test_legacy_arguments_are_those_of_the_default_exchange() -> None:
    """A queue declared before the moves exchange dead-lettered through "" (same key)."""
    topology = worker_topology("orders", {}, POLICY, QueueOptions())
    by_name = {q.name: q for q in topology.queues}
    legacy = by_name["orders"].legacy_arguments
    assert legacy is not None and legacy["x-dead-letter-exchange"] == ""
    assert legacy["x-dead-letter-routing-key"] == "orders.dlq"
    assert by_name["orders.dlq"].legacy_arguments is None


def test_dlq_sets_its_own_large_delivery_limit() -> None:
    """The DLQ never falls under 4.x's default limit of 20 (listing it returns messages)."""
    args = _queues()["orders.dlq"]
    assert args == {"x-queue-type": "quorum", "x-delivery-limit": DLQ_DELIVERY_LIMIT}
    assert DLQ_DELIVERY_LIMIT >= 100_000


def test_earlier_versions_arguments_are_accepted_after_the_current_ones() -> None:
    """A queue tries its current arguments first, then those of earlier versions: the DLQ
    without its own delivery limit, the queue dead-lettering through the default exchange;
    a retry tier has no earlier form but its default-exchange one."""
    topology = worker_topology(
        "orders", {"PlaceOrder": names.COMMANDS_EXCHANGE}, POLICY, QueueOptions()
    )
    by_name = {q.name: q for q in topology.queues}
    dlq = [dict(a) for a in by_name["orders.dlq"].accepted_arguments()]
    assert dlq == [
        {"x-queue-type": "quorum", "x-delivery-limit": DLQ_DELIVERY_LIMIT},
        {"x-queue-type": "quorum"},
    ]
    main = [dict(a) for a in by_name["orders"].accepted_arguments()]
    assert len(main) == 2 and main[0] == dict(by_name["orders"].arguments)
    assert main[1]["x-dead-letter-exchange"] == ""


def test_argument_mismatch_error_names_the_argument_setting_and_migration() -> None:
    """PRECONDITION_FAILED becomes one line: which argument, which setting, what to do."""
    error = QueueArgumentsDiffer(
        "orders",
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'orders' in vhost "
            "'/': received the value '5' of type 'signedint' but current is none"
        ),
    )
    text = str(error)
    assert text.startswith(
        "queue 'orders' exists with another x-max-length than declared "
        "(max_length): inequivalent arg 'x-max-length'"
    )
    assert "delete_queue orders" in text and "\n" not in text
    assert error.argument == "x-max-length"


def test_an_instance_queue_expires_with_its_companions_and_exchange() -> None:
    """`expires_ms` puts x-expires on the queue, its DLQ and every tier, and makes the moves
    exchange auto-delete (it goes with its last queue); the DLQ then has no older form."""
    topology = worker_topology("feed.a", {}, POLICY, QueueOptions(expires_ms=900_000))
    assert topology.expiring
    assert {q.name: q.arguments.get("x-expires") for q in topology.queues} == dict.fromkeys(
        (q.name for q in topology.queues), 900_000
    )
    by_name = {q.name: q for q in topology.queues}
    assert by_name["feed.a.dlq"].fallback is None
    shared = worker_topology("orders", {}, POLICY, QueueOptions())
    assert not shared.expiring
    assert all("x-expires" not in q.arguments for q in shared.queues)
    assert (shared + topology).expiring
