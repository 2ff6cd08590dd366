"""Idempotency stores: make each key take effect once per consuming queue."""

from framework.idempotency.factory import open_store
from framework.idempotency.memory import MemoryStore
from framework.idempotency.store import ClaimResult, IdempotencyStore

__all__ = ["ClaimResult", "IdempotencyStore", "MemoryStore", "open_store"]
