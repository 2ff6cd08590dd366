"""Keeping the garbage collector off the hot path of a long-lived worker process.

After start-up a worker holds tens of thousands of objects that live as long as the
process (modules, classes, pydantic validators, settings, topology). Every full collection
walks all of them again, which costs more per message than the handler of a small message.
`freeze_startup_heap` moves what is alive at that point into the permanent generation, so
collections only walk what the work itself allocates. `framework run` calls it once its
worker is consuming; call it yourself at the same point if you run workers from your own
`main` (it is process-wide, so the framework does not do it behind a library call).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then freeze everything still alive; returns the frozen object count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
