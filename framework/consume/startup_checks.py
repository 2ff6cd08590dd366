"""The broker checks of `framework.consume.broker_checks` on a worker's own queues, read through the
management API: `framework check --broker` runs them for every worker, and each worker runs
them for itself at start when `FRAMEWORK_MANAGEMENT_URL` is set (errors refuse the start,
warnings are logged). Without that setting a worker does not reach for the management API
(least privilege: a service user may have none); the queue arguments are still checked by
the declaration itself (`QueueArgumentsDiffer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from framework.consume.broker_checks import HandlerNeeds, queue_problems
from framework.consume.worker_spec import WorkerSpec
from framework.contracts.problems import Problem
from framework.errors import ConfigurationError
from framework.ops.management import ManagementApi, ManagementUnavailable
from framework.settings import Settings
from framework.wire.topology import QueueSpec


async def worker_queue_problems(
    api: ManagementApi, spec: WorkerSpec, worker: str, store_timeout: float = 0.0
) -> list[Problem]:
    """Every queue of `spec`'s topology as it exists on the broker against what `worker`
    declares; the main queue also against what its handling needs (`store_timeout`: the
    bound of one idempotency store call, two of which keep a delivery unacked besides its
    handler). Raises `ManagementUnavailable` when the API cannot be read."""
    queues = spec.topology.queues
    existing = await asyncio.gather(*(api.queue(queue.name) for queue in queues))
    needs = HandlerNeeds(spec.policy.max_attempts, spec.timeout, 2 * store_timeout)
    problems: list[Problem] = []
    for index, (queue, found) in enumerate(zip(queues, existing, strict=True)):
        problems += queue_problems(
            queue.name,
            worker,
            declared_for(queue, found),
            found,
            needs if index == 0 else None,
        )
    return problems


def declared_for(queue: QueueSpec, existing: Mapping[str, Any] | None) -> dict[str, Any]:
    """The argument set the worker keeps `queue` with, as the declaration does: the current
    one, or an earlier framework version's that the queue exists with
    (`QueueSpec.accepted_arguments`)."""
    have = dict((existing or {}).get("arguments") or {})
    accepted = queue.accepted_arguments()
    return dict(next((a for a in accepted if dict(a) == have), queue.arguments))


def refuse_unheld_consumer_timeout(spec: WorkerSpec, worker: str, settings: Settings) -> None:
    """`ConfigurationError` if the handler `timeout` is at or above the broker's global
    consumer timeout (`broker_consumer_timeout`: a server setting no client can read)."""
    limit = settings.broker_consumer_timeout
    if spec.timeout >= limit:
        raise ConfigurationError(
            f"{worker}.timeout is {spec.timeout:g}s but the broker closes the channel of a "
            f"delivery unacked for {limit:g}s (FRAMEWORK_BROKER_CONSUMER_TIMEOUT, RabbitMQ's "
            "consumer_timeout): lower the timeout, or raise consumer_timeout on the broker and "
            "the setting with it"
        )


async def check_worker_queues(
    spec: WorkerSpec, worker: str, settings: Settings, amqp_url: str, log: Any
) -> None:
    """At worker start, with `FRAMEWORK_MANAGEMENT_URL` set: `worker_queue_problems` on the
    node at `amqp_url`; errors raise one `ConfigurationError`, warnings and an unreadable
    API are logged. Without the setting, nothing (the declaration checked the arguments)."""
    if settings.management_url is None:
        return
    api = ManagementApi.for_node(amqp_url, settings)
    try:
        problems = await worker_queue_problems(api, spec, worker, settings.idempotency_timeout)
    except ManagementUnavailable as exc:
        log.warning("bus.broker_checks_skipped", worker=worker, error=str(exc))
        return
    for problem in problems:
        if problem.level != "error":
            log.warning("bus.broker_check", code=problem.code, detail=problem.text)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise ConfigurationError(
            f"the broker would break {worker}'s guarantees: "
            + "; ".join(f"[{p.code}] {p.text}" for p in errors)
        )
