"""Markers by folder: tests/unit are unit, tests/integration integration, tests/chaos chaos."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for marker in ("unit", "integration", "chaos"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))
