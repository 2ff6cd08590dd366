"""Idempotency keys: fresh ones for new messages, derived ones inside handlers."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5b0c3c2e-8a55-4d0e-9b39-6c1f0a6f7d21")


def new_key() -> str:
    """A fresh, unique idempotency key."""
    return str(uuid.uuid4())


def derive_key(parent_key: str, index: int, type_name: str) -> str:
    """The key of the `index`-th message of `type_name` published while handling `parent_key`.

    Deterministic, so a retried handler re-publishes the same keys and downstream workers
    deduplicate them.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{parent_key}\x1f{index}\x1f{type_name}"))
