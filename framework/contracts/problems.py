"""Contract problems between services, found before deploy (pure; used by `framework check`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from framework.consume.worker_spec import build_spec
from framework.contracts.discovery import Catalog
from framework.errors import ConfigurationError
from framework.messages import Message, is_command
from framework.worker import Worker

Level = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: `level` error fails the check, warning does not."""

    level: Level
    code: str
    text: str


def find_problems(catalog: Catalog) -> list[Problem]:
    """Every contract problem in `catalog`, errors first."""
    problems: list[Problem] = []
    consumers: dict[str, set[str]] = defaultdict(set)
    for worker in catalog.workers:
        try:
            spec = build_spec(worker)
        except ConfigurationError as exc:
            code = "missing-annotation" if "must annotate" in str(exc) else "invalid-worker"
            problems.append(Problem("error", code, f"{_name(worker)}: {exc}"))
            continue
        for type_name in spec.message_types:
            consumers[type_name].add(f"{spec.queue} ({_name(worker)})")
        problems += _check_publishes(worker)
    for type_name, cls in catalog.messages.items():
        queues = sorted(consumers.get(type_name, ()))
        if is_command(cls) and len(queues) > 1:
            problems.append(
                Problem(
                    "error",
                    "duplicate-handler",
                    f"command {type_name} is consumed by {len(queues)} queues: "
                    f"{', '.join(queues)}; a command must have exactly one handler "
                    "(make one of them an Event?)",
                )
            )
        elif is_command(cls) and not queues:
            problems.append(
                Problem(
                    "error",
                    "unhandled-command",
                    f"command {type_name} ({_name(cls)}) has no worker: sending it raises "
                    "Unroutable",
                )
            )
        elif not is_command(cls) and not queues:
            problems.append(
                Problem(
                    "warning",
                    "unsubscribed-event",
                    f"event {type_name} ({_name(cls)}) has no subscriber",
                )
            )
    return sorted(problems)


def _check_publishes(worker: type[Worker]) -> list[Problem]:
    return [
        Problem(
            "error",
            "invalid-publishes",
            f"{_name(worker)}.publishes lists {item!r}, which is not a Command or Event",
        )
        for item in worker.publishes
        if not (isinstance(item, type) and issubclass(item, Message))
    ]


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
