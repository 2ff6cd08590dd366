"""Local replicas of another service's data, fed by its events.

`framework.replica` was a module before the layout by flow; what it defined is
re-exported here (from `local.py`), so old imports keep working."""

from framework.replica.local import Clock, M, Replica

__all__ = ["Clock", "M", "Replica"]
