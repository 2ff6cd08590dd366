"""Start-up checks of the broker: can the framework's guarantees hold on it? Pure decisions.

`framework check --broker` (and, for the version, every Bus at start) reads what the broker
is and how it is configured, and reports as `contracts.Problem`s: an error when a guarantee
cannot hold (a queue that exists with other arguments than its worker declares, a policy
that lowers the delivery limit or moves dead letters elsewhere), a warning when it is only
risky (a broker version the framework is not tested on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.contracts import Problem

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


def queue_problems(
    queue: str, worker: str, declared: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> list[Problem]:
    """Errors for queue `queue` as it exists (management API queue object; None: not yet
    declared) against the `declared` arguments of `worker`."""
    if existing is None:
        return []
    problems: list[Problem] = []
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
