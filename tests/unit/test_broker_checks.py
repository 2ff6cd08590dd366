"""Start-up checks of the broker decide from what it reports, without a broker."""

from __future__ import annotations

from framework.consume.broker_checks import HandlerNeeds, queue_problems, version_problems

DECLARED = {
    "x-queue-type": "quorum",
    "x-delivery-limit": 10,
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": "orders.dlq",
}


def test_tested_versions_pass_and_others_warn() -> None:
    """3.10.x and 4.0.x are tested; anything else is a warning, not an error."""
    assert version_problems("3.10.8") == version_problems("4.0.5") == []
    (problem,) = version_problems("4.1.0")
    assert (problem.level, problem.code) == ("warning", "broker-version")
    assert "4.1.0" in problem.text and "3.10, 4.0" in problem.text


def test_a_queue_not_yet_declared_or_declared_alike_is_fine() -> None:
    """Nothing to report when the queue is missing or has exactly the declared arguments."""
    assert queue_problems("orders", "OrderWorker", DECLARED, None) == []
    assert queue_problems("orders", "OrderWorker", DECLARED, {"arguments": DECLARED}) == []


def test_a_conflicting_argument_is_an_error_naming_it_and_the_migration() -> None:
    """x-delivery-limit 3 on the broker vs 10 declared: one error saying both and what to do."""
    existing = {"arguments": {**DECLARED, "x-delivery-limit": 3}}
    (problem,) = queue_problems("orders", "OrderWorker", DECLARED, existing)
    assert problem.level == "error" and problem.code == "queue-arguments"
    assert "x-delivery-limit=3 but OrderWorker declares 10" in problem.text
    assert "delete_queue orders" in problem.text


def test_a_policy_lowering_the_delivery_limit_is_an_error() -> None:
    """A policy's delivery-limit below the worker's wins on the broker: refused."""
    existing = {
        "arguments": DECLARED,
        "policy": "tight",
        "effective_policy_definition": {"delivery-limit": 2},
    }
    (problem,) = queue_problems("orders", "OrderWorker", DECLARED, existing)
    assert problem.code == "policy-delivery-limit"
    assert "policy tight lowers the delivery limit of orders to 2" in problem.text
    higher = {**existing, "effective_policy_definition": {"delivery-limit": 50}}
    assert queue_problems("orders", "OrderWorker", DECLARED, higher) == []


def test_a_policy_that_moves_dead_letters_out_of_the_dlq_is_an_error() -> None:
    """A dead-letter target or TTL from a policy on a queue that declares none is refused."""
    dlq = {"x-queue-type": "quorum", "x-delivery-limit": 1_000_000}
    existing = {
        "arguments": dlq,
        "policy": "everything",
        "effective_policy_definition": {"dead-letter-exchange": "elsewhere", "message-ttl": 60000},
    }
    codes = [p.code for p in queue_problems("orders.dlq", "OrderWorker", dlq, existing)]
    assert codes == ["policy-moves-messages", "policy-moves-messages"]
    # the main queue's own dead-letter arguments win over a policy's
    main = {"arguments": DECLARED, "effective_policy_definition": {"dead-letter-exchange": "x"}}
    assert queue_problems("orders", "OrderWorker", DECLARED, main) == []


NEEDS = HandlerNeeds(max_attempts=5, timeout=30.0)


def test_a_queue_of_another_type_is_an_error() -> None:
    """A classic queue where the worker declares a quorum queue: its guarantees do not hold."""
    existing = {"arguments": DECLARED, "type": "classic"}
    (problem,) = queue_problems("orders", "OrderWorker", DECLARED, existing)
    assert (problem.level, problem.code) == ("error", "queue-type")
    assert "orders is a classic queue but OrderWorker declares quorum" in problem.text


def test_a_consumer_timeout_at_or_below_the_handler_timeout_is_an_error() -> None:
    """A policy's consumer-timeout (ms) of 30 s against a 30 s handler timeout: refused;
    the lower of policy and queue argument counts, and a longer one passes."""
    existing = {
        "arguments": DECLARED,
        "policy": "short",
        "effective_policy_definition": {"consumer-timeout": 30_000},
    }
    (problem,) = queue_problems("orders", "OrderWorker", DECLARED, existing, NEEDS)
    assert (problem.level, problem.code) == ("error", "consumer-timeout")
    assert "policy short closes the channel" in problem.text and "30s" in problem.text
    argument = {"arguments": {**DECLARED, "x-consumer-timeout": 10_000}}
    (by_argument,) = [
        p
        for p in queue_problems("orders", "OrderWorker", DECLARED, argument, NEEDS)
        if p.code == "consumer-timeout"
    ]
    assert "x-consumer-timeout" in by_argument.text and "10s" in by_argument.text
    longer = {**existing, "effective_policy_definition": {"consumer-timeout": 60_000}}
    assert queue_problems("orders", "OrderWorker", DECLARED, longer, NEEDS) == []


def test_a_delivery_limit_below_max_attempts_is_a_warning() -> None:
    """The worker's own delivery_limit below its max_attempts is its choice: a warning
    that says what it costs; at or above max_attempts nothing is reported."""
    low = {**DECLARED, "x-delivery-limit": 2}
    (problem,) = queue_problems("orders", "OrderWorker", low, {"arguments": low}, NEEDS)
    assert (problem.level, problem.code) == ("warning", "delivery-limit-below-attempts")
    assert "OrderWorker.delivery_limit is 2 but it makes up to 5 attempts" in problem.text
    assert queue_problems("orders", "OrderWorker", DECLARED, {"arguments": DECLARED}, NEEDS) == []


def test_a_consumer_timeout_barely_above_the_handler_timeout_is_a_warning() -> None:
    """A consumer timeout above `timeout` but within the store calls around the handler
    (claim and completion): a warning saying how much room to leave; beyond it, nothing."""
    needs = HandlerNeeds(max_attempts=5, timeout=30.0, margin=10.0)
    existing = {
        "arguments": DECLARED,
        "policy": "tight",
        "effective_policy_definition": {"consumer-timeout": 35_000},
    }
    (problem,) = queue_problems("orders", "OrderWorker", DECLARED, existing, needs)
    assert (problem.level, problem.code) == ("warning", "consumer-timeout-margin")
    assert "policy tight closes the channel" in problem.text
    assert "only 5s above OrderWorker.timeout (30s)" in problem.text
    assert "leave at least 10s more" in problem.text
    roomy = {**existing, "effective_policy_definition": {"consumer-timeout": 41_000}}
    assert queue_problems("orders", "OrderWorker", DECLARED, roomy, needs) == []
