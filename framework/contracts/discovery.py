"""Finding the workers and message contracts of a code base, by importing it (no registry)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from framework.consume.worker_spec import handled_types
from framework.contracts.loading import import_package_tree
from framework.contracts.project import LAYOUT_PACKAGES, project_modules
from framework.errors import ConfigurationError
from framework.messages import Command, Event, Message
from framework.worker import Worker

DEFAULT_MODULES = LAYOUT_PACKAGES  # kept for importers; the default is `project_modules()`
T = TypeVar("T")


@dataclass(frozen=True)
class Catalog:
    """Concrete workers (those that set `queue`) and message types found under `modules`."""

    modules: tuple[str, ...]
    workers: tuple[type[Worker], ...]
    messages: dict[str, type[Message]]


def discover(modules: Sequence[str] = (), *, skip_missing: bool = False) -> Catalog:
    """Import `modules` (packages with all submodules; default: the project's packages in
    the current directory, see `framework.contracts.project`).

    Workers and messages count when defined under those modules; messages a worker handles
    or `publishes` count wherever they are defined.
    """
    names = tuple(modules) or project_modules()
    imported = []
    for name in names:
        try:
            import_package_tree(name)
        except ConfigurationError:
            if skip_missing:
                continue
            raise
        imported.append(name)
    if not imported:
        raise ConfigurationError(f"none of {', '.join(names)} could be imported: pass -m PACKAGE")
    workers = sorted(
        (
            cls
            for cls in _subclasses(Worker)
            if _within(cls.__module__, imported) and isinstance(cls.queue, str) and cls.queue
        ),
        key=lambda cls: (cls.__module__, cls.__qualname__),
    )
    messages: dict[str, type[Message]] = {}
    for cls in _subclasses(Message):
        if cls not in (Command, Event) and _within(cls.__module__, imported):
            messages.setdefault(cls.type_name, cls)
    for worker in workers:
        for cls in (*_safe_handled(worker), *getattr(worker, "publishes", ())):
            if isinstance(cls, type) and issubclass(cls, Message):
                messages.setdefault(cls.type_name, cls)
    return Catalog(tuple(imported), tuple(workers), dict(sorted(messages.items())))


def _safe_handled(worker: type[Worker]) -> list[type[Message]]:
    try:
        return list(handled_types(worker).values())
    except ConfigurationError:
        return []


def _within(module: str, packages: Sequence[str]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _subclasses(base: type[T]) -> Iterator[type[T]]:
    pending = list(base.__subclasses__())
    seen: set[type[T]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        yield cls
