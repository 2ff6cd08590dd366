"""Without -m, `framework check`/`asyncapi`/`schema`/`send` describe the user's own project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from framework.contracts.project import project_modules
from framework.errors import ConfigurationError

WORKER = """
from framework import Command, Context, Worker


class Ship(Command):
    type_name = "shop.Ship.v1"
    parcel: str


class ShipWorker(Worker):
    queue = "shop-shipping"

    async def handle(self, msg: Ship, ctx: Context) -> None:
        return None
"""


def package(root: Path, name: str, source: str = "") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(source)


def framework(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_tool_framework_modules_come_first(tmp_path: Path) -> None:
    """`[tool.framework] modules` in ./pyproject.toml names the packages."""
    package(tmp_path, "services")
    (tmp_path / "pyproject.toml").write_text('[tool.framework]\nmodules = ["shop", "contracts"]\n')
    assert project_modules(tmp_path) == ("shop", "contracts")


def test_services_and_schemas_of_the_current_directory(tmp_path: Path) -> None:
    """Without the setting: the README's layout, whichever of the two packages exist."""
    package(tmp_path, "services")
    (tmp_path / "schemas").mkdir()  # a directory without __init__.py is not a package
    assert project_modules(tmp_path) == ("services",)


def test_package_named_after_the_project(tmp_path: Path) -> None:
    """Else the package named like `[project] name`, also in src/."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-shop"\n')
    package(tmp_path / "src", "my_shop")
    assert project_modules(tmp_path) == ("my_shop",)


def test_nothing_found_says_how_to_name_the_packages(tmp_path: Path) -> None:
    """No setting, no layout, no project package: an error naming -m and [tool.framework]."""
    with pytest.raises(ConfigurationError, match=r"pass -m PACKAGE .*\[tool.framework\]"):
        project_modules(tmp_path)


def test_malformed_setting_is_refused(tmp_path: Path) -> None:
    """`modules` must be a non-empty list of names."""
    (tmp_path / "pyproject.toml").write_text('[tool.framework]\nmodules = "shop"\n')
    with pytest.raises(ConfigurationError, match="must be a non-empty list"):
        project_modules(tmp_path)


def test_check_describes_the_users_services_not_the_examples(tmp_path: Path) -> None:
    """In an outside project, `framework check` finds the user's worker and none of the
    framework's example services."""
    package(tmp_path, "services", WORKER)
    result = framework(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "1 workers, 1 message types" in result.stdout


def test_asyncapi_follows_the_pyproject_setting(tmp_path: Path) -> None:
    """`framework asyncapi` documents the packages `[tool.framework] modules` names."""
    package(tmp_path, "shop", WORKER)
    (tmp_path / "pyproject.toml").write_text('[tool.framework]\nmodules = ["shop"]\n')
    result = framework(tmp_path, "asyncapi")
    assert result.returncode == 0, result.stderr
    assert "shop.Ship.v1" in result.stdout and "orders.PlaceOrder.v1" not in result.stdout


def test_check_in_an_empty_directory_is_one_error_line(tmp_path: Path) -> None:
    """Nothing to describe: one `error:` line that says what to do."""
    result = framework(tmp_path, "check")
    assert result.returncode == 2
    assert result.stderr.startswith("error: found no packages to describe")
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_describes_the_project_package_not_the_examples(tmp_path: Path) -> None:
    """A project without services/ gets its own package described (`[project] name`), never
    the framework's example services."""
    package(tmp_path, "shop", WORKER)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "1"\n')
    result = framework(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "1 workers, 1 message types" in result.stdout
