"""When a worker warns that its in-process store is not shared (pure decision)."""

from __future__ import annotations

import pytest

from framework.idempotency.sharing import unshared_warning


@pytest.mark.parametrize(
    ("consumers", "in_process", "warn"),
    [
        (1, True, False),  # alone on the queue: memory:// is enough
        (2, True, True),  # another replica: its redeliveries would not see our keys
        (20, True, True),
        (None, True, False),  # count unknown: say nothing rather than guess
        (5, False, False),  # a shared store
    ],
)
def test_warns_only_for_in_process_store_with_other_consumers(
    consumers: int | None, in_process: bool, warn: bool
) -> None:
    assert unshared_warning(consumers, in_process) is warn
