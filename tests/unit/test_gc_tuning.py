"""freeze_startup_heap moves what is alive out of the collector's walks, and only that."""

from __future__ import annotations

import gc

from framework.ops.gc_tuning import freeze_startup_heap


def test_freezes_what_is_alive_and_later_garbage_is_still_collected() -> None:
    try:
        kept = [[i] for i in range(1000)]
        frozen = freeze_startup_heap()
        assert frozen >= 1000
        assert gc.get_freeze_count() == frozen
        # objects made afterwards are collected as usual (a cycle, unreachable)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
        assert len(kept) == 1000
    finally:
        gc.unfreeze()
