"""Which packages are "the user's project" when a command is given no `-m/--module`.

In this order, looking at the current directory:

1. `modules = ["pkg", ...]` under `[tool.framework]` in its `pyproject.toml`;
2. else its `services` and `schemas` packages (the layout of the README), those present;
3. else the package named like the project (`[project] name`, `-` as `_`), in the directory
   or in `src/`.

Nothing installed elsewhere counts, so an unrelated `services` package in site-packages is
never described as the user's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from framework.errors import ConfigurationError

LAYOUT_PACKAGES = ("services", "schemas")
HOW_TO_NAME_THEM = (
    'pass -m PACKAGE (repeatable), or set modules = ["PACKAGE", ...] under [tool.framework] '
    "in pyproject.toml"
)


def project_modules(directory: Path | None = None) -> tuple[str, ...]:
    """The packages to import for the project in `directory` (default: the current one)."""
    root = Path.cwd() if directory is None else directory
    config = _pyproject(root)
    configured = config.get("tool", {}).get("framework", {}).get("modules")
    if configured is not None:
        if not (
            isinstance(configured, list)
            and configured
            and all(isinstance(m, str) and m for m in configured)
        ):
            raise ConfigurationError(
                f"[tool.framework] modules in {root / 'pyproject.toml'} must be a non-empty "
                f"list of package names, got {configured!r}"
            )
        return tuple(configured)
    present = tuple(name for name in LAYOUT_PACKAGES if _is_package(root / name))
    if present:
        return present
    name = str(config.get("project", {}).get("name", "")).replace("-", "_").replace(".", "_")
    if name and (_is_package(root / name) or _is_package(root / "src" / name)):
        return (name,)
    raise ConfigurationError(
        f"found no packages to describe in {root} (no [tool.framework] modules, no services/ "
        f"or schemas/ package, no package named after the project): {HOW_TO_NAME_THEM}"
    )


def _is_package(path: Path) -> bool:
    return (path / "__init__.py").is_file()


def _pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
