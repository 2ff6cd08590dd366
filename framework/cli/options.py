"""Options several commands share, so each is spelled the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

PROJECT_DEFAULT = (
    "default: [tool.framework] modules in ./pyproject.toml, else ./services and "
    "./schemas, else the project's package"
)


def module_option(help: str) -> Callable[[F], F]:
    """`-m/--module M` (repeatable) into the parameter `modules`: packages to import."""
    return click.option("-m", "--module", "modules", multiple=True, metavar="M", help=help)
