"""The pytest plugin in a user's project: the README's examples pass in strict and auto mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def readme_example() -> str:
    """The README's service (up to its `async with Bus.connect` snippet) and its test_bus test."""
    blocks = python_blocks(README.read_text())
    service = next(b for b in blocks if "class OrderWorker(Worker)" in b)
    test = next(b for b in blocks if "def test_place_order(test_bus" in b)
    return service.split("async with Bus.connect")[0] + "\n\n" + test


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_readme_example_passes_in_an_outside_project(tmp_path: Path, mode: str) -> None:
    """A fresh project with the README's example passes in pytest-asyncio's default
    strict mode (asyncio_mode not set) and in auto mode, using only the installed plugin."""
    (tmp_path / "test_orders.py").write_text(readme_example())
    options = ['filterwarnings = ["error"]', 'asyncio_default_fixture_loop_scope = "function"']
    if mode == "auto":
        options.append('asyncio_mode = "auto"')
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "shop"\nversion = "0"\n\n[tool.pytest.ini_options]\n'
        + "\n".join(options)
        + "\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout
