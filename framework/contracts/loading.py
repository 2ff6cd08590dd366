"""Loading user code named on the command line (`package.module:WorkerClass`)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from framework.errors import ConfigurationError


def import_module(name: str) -> ModuleType:
    """Import `name` (the current directory is importable, like `python -m`)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"cannot import module {name!r}: {exc}; check the path and that the package is "
            "installed or in the current directory"
        ) from exc


def load_object(path: str) -> object:
    """Resolve `module:attribute` to the object it names."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"expected MODULE:NAME (e.g. services.orders.worker:OrderWorker), got {path!r}"
        )
    module = import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}") from exc


def import_package_tree(name: str) -> list[ModuleType]:
    """Import a package and all its submodules (so their message classes exist)."""
    package = import_module(name)
    modules = [package]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
        modules.append(importlib.import_module(info.name))
    return modules
