"""Start-up checks of the broker: can the framework's guarantees hold on it? Pure decisions.

`framework check --broker` (and, for the version, every Bus at start) reads what the broker
is and how it is configured, and reports as `contracts.Problem`s: an error when a guarantee
cannot hold (a queue that exists with other arguments than its worker declares, a policy
that lowers the delivery limit or moves dead letters elsewhere), a warning when it is only
risky (a broker version the framework is not tested on). The same checks run at worker start
on the worker's own queues when a management API is configured (`framework.consume.startup_checks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framework.contracts.problems import Problem

TESTED_VERSIONS = ("3.10", "4.0")

# what a policy may set that takes messages away from where the framework puts them
_MOVES_MESSAGES = ("dead-letter-exchange", "dead-letter-routing-key", "message-ttl", "expires")


def version_problems(version: str | None) -> list[Problem]:
    """A warning unless the broker is a RabbitMQ release the test suites run on."""
    if not version:
        return [Problem("warning", "broker-version", "the broker did not say its version")]
    release = ".".join(version.split(".")[:2])
    if release in TESTED_VERSIONS:
        return []
    return [
        Problem(
            "warning",
            "broker-version",
            f"RabbitMQ {version} is not a version the framework is tested on "
            f"({', '.join(TESTED_VERSIONS)}): run the integration and chaos suites against it "
            "(scripts/on-broker) before relying on it",
        )
    ]


@dataclass(frozen=True)
class HandlerNeeds:
    """What a worker's handling needs of its main queue: attempts before the broker may
    dead-letter a message, seconds its handler may run (`timeout`), and the seconds a
    delivery also stays unacked around its handler (`margin`: the idempotency store calls
    claiming and completing its key, at most)."""

    max_attempts: int
    timeout: float
    margin: float = 0.0


def queue_problems(
    queue: str,
    worker: str,
    declared: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    needs: HandlerNeeds | None = None,
) -> list[Problem]:
    """Errors for queue `queue` as it exists (management API queue object; None: not yet
    declared) against the `declared` arguments of `worker`; with `needs` (the worker's main
    queue), also the delivery limit and consumer timeout its handling needs."""
    if existing is None:
        return []
    problems: list[Problem] = []
    kind, want_kind = existing.get("type"), declared.get("x-queue-type")
    if isinstance(kind, str) and isinstance(want_kind, str) and kind != want_kind:
        problems.append(
            Problem(
                "error",
                "queue-type",
                f"queue {queue} is a {kind} queue but {worker} declares {want_kind}: its "
                "delivery limit and dead-lettering would not hold; to migrate, stop its "
                f"workers, drain or move its messages, delete it (rabbitmqctl delete_queue "
                f"{queue}) and start again",
            )
        )
    arguments = dict(existing.get("arguments") or {})
    for key in sorted(set(declared) | set(arguments)):
        want, have = declared.get(key), arguments.get(key)
        if want != have:
            problems.append(
                Problem(
                    "error",
                    "queue-arguments",
                    f"queue {queue} exists with {key}={have!r} but {worker} declares {want!r}: "
                    "the worker would not start; to migrate, stop its workers, let the queue "
                    f"drain (or move its messages), delete it (rabbitmqctl delete_queue {queue}) "
                    "and start again, or set the worker back to the queue's value",
                )
            )
    policy = dict(existing.get("effective_policy_definition") or {})
    name = existing.get("policy") or "(operator policy)"
    limit, own = policy.get("delivery-limit"), declared.get("x-delivery-limit")
    if isinstance(limit, int) and isinstance(own, int) and limit < own:
        problems.append(
            Problem(
                "error",
                "policy-delivery-limit",
                f"policy {name} lowers the delivery limit of {queue} to {limit} (below the "
                f"{own} {worker} declares): messages are dead-lettered after fewer redeliveries "
                "than the worker plans for; raise it in the policy or drop the key",
            )
        )
    if needs is not None:
        problems += _needs_problems(queue, worker, name, declared, arguments, policy, needs)
    for key in _MOVES_MESSAGES:
        if key in policy and f"x-{key}" not in declared:
            problems.append(
                Problem(
                    "error",
                    "policy-moves-messages",
                    f"policy {name} sets {key}={policy[key]!r} on {queue}: messages would leave "
                    "it where the framework does not look for them (lost or moved); remove "
                    f"the key from the policy for queues of {worker}",
                )
            )
    return problems


def _needs_problems(
    queue: str,
    worker: str,
    policy_name: str,
    declared: Mapping[str, Any],
    arguments: Mapping[str, Any],
    policy: Mapping[str, Any],
    needs: HandlerNeeds,
) -> list[Problem]:
    """The main queue's delivery limit and consumer timeout against what the worker's
    handling needs. Retries are new messages (through the delay tiers), but a quorum queue
    counts every redelivery of one message (a crash, a lost channel, a settlement that could
    not be confirmed) against the limit: below `max_attempts`, those dead-letter a message
    before the worker has made the attempts it promises. A handler still running at the
    consumer timeout has its channel closed by the broker: every delivery on it comes back
    and is handled again."""
    problems: list[Problem] = []
    own = declared.get("x-delivery-limit")
    if isinstance(own, int) and own < needs.max_attempts:
        # a policy below the worker's own limit is reported as policy-delivery-limit
        problems.append(
            Problem(
                "warning",
                "delivery-limit-below-attempts",
                f"{worker}.delivery_limit is {own} but it makes up to {needs.max_attempts} "
                f"attempts: a message whose attempts are cut short by crashes or lost channels "
                f"is dead-lettered after {own} deliveries (fine for crash loops you want "
                f"stopped early; otherwise raise delivery_limit to {needs.max_attempts})",
            )
        )
    timeouts = [
        (value / 1000.0, source)
        for value, source in (
            (arguments.get("x-consumer-timeout"), "the queue argument x-consumer-timeout"),
            (policy.get("consumer-timeout"), f"policy {policy_name}"),
        )
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ]
    if timeouts:
        seconds, source = min(timeouts)
        if needs.timeout >= seconds:
            problems.append(
                Problem(
                    "error",
                    "consumer-timeout",
                    f"{source} closes the channel of a delivery unacked for {seconds:g}s on "
                    f"{queue}, but {worker}.timeout is {needs.timeout:g}s: a slow handler's "
                    "messages would be redelivered and handled twice; lower the timeout or "
                    "raise the consumer timeout",
                )
            )
        elif needs.timeout + needs.margin >= seconds:
            problems.append(
                Problem(
                    "warning",
                    "consumer-timeout-margin",
                    f"{source} closes the channel of a delivery unacked for {seconds:g}s on "
                    f"{queue}, only {seconds - needs.timeout:g}s above {worker}.timeout "
                    f"({needs.timeout:g}s): a delivery also stays unacked while its key is "
                    f"claimed and completed (up to {needs.margin:g}s) and its settlement is "
                    "published; a handler using all of its timeout could have its channel "
                    f"closed and run twice: leave at least {needs.margin:g}s more",
                )
            )
    return problems
