"""Message contracts across services: discovery, compatibility, schemas, AsyncAPI.

`framework.contracts` was a module before the layout by flow; what it defined is
re-exported here (from `problems.py`), so old imports keep working."""

from framework.contracts.problems import Level, Problem, find_problems

__all__ = ["Level", "Problem", "find_problems"]
