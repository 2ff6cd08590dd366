"""The public surface is what is documented, nothing more and nothing less.

`framework/__init__.py`'s docstring lists every public name; `__all__` must be exactly that
list, and every package of the framework says what it exports with an `__all__` that holds
exactly the public names it binds. A name added without being documented (or left behind
after a removal) fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types

import pytest

import framework

SUBPACKAGES = sorted(
    info.name
    for info in pkgutil.walk_packages(framework.__path__, "framework.")
    if info.ispkg and not info.name.startswith("framework._")
)
PACKAGES = ["framework", *SUBPACKAGES]


def documented_names() -> set[str]:
    """The names listed in the package docstring: the first word of each indented line."""
    doc = framework.__doc__ or ""
    names: set[str] = set()
    for line in doc.splitlines():
        match = re.match(r"^    ([A-Za-z_][\w, ]*?)\s{2,}\S", line)
        if match:
            names.update(name.strip() for name in match.group(1).split(","))
    return names


def test_all_is_exactly_the_documented_api() -> None:
    documented = documented_names()
    exported = set(framework.__all__)
    assert exported - documented == set(), "exported but not documented in framework/__init__"
    assert documented - exported == set(), "documented but not exported"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_exports_exactly_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{package} has no __all__"
    assert len(exported) == len(set(exported)), f"{package}.__all__ repeats a name"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    }
    assert set(exported) == public


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{package}.{name}"


def test_every_package_is_checked() -> None:
    assert {"framework.cli", "framework.idempotency", "framework.testing"} <= set(PACKAGES)


def test_the_docstring_parser_sees_the_list() -> None:
    # guards the check above against a parser that finds nothing
    assert {"Bus", "Worker", "Context", "Command", "Event"} <= documented_names()
