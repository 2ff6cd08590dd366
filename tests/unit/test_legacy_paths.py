"""Modules moved into packages by flow still import under their old flat names.

Code written against earlier versions (`from framework import names`, `import
framework.settle`, `from framework.idempotency.sqlite import ...` is unchanged) keeps working:
the old name gives the very module object at its new place, not a copy.
"""

from __future__ import annotations

import importlib

import pytest

from framework._legacy import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_place(old: str, new: str) -> None:
    assert importlib.import_module(f"framework.{old}") is importlib.import_module(
        f"framework.{new}"
    )


def test_from_framework_import_an_old_module_name() -> None:
    from framework import names, settle  # type: ignore[attr-defined]
    from framework.consume import settle as moved_settle
    from framework.wire import names as moved_names

    assert names is moved_names and settle is moved_settle


def test_an_unknown_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("framework.no_such_module")
