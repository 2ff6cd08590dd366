"""Idempotency keys: fresh ones for new messages, derived ones inside handlers."""

from __future__ import annotations

import hashlib
import os
import uuid

_NAMESPACE = uuid.UUID("5b0c3c2e-8a55-4d0e-9b39-6c1f0a6f7d21")


def new_key() -> str:
    """A fresh, unique idempotency key: a random (version 4) UUID in its usual text form.

    Built from 16 bytes of the OS's randomness like `uuid.uuid4()`, without the UUID object
    (half the cost; it is made for every message sent)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# the RFC 4122 variant: the top two bits of the clock_seq_hi octet are 10
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def derive_key(parent_key: str, index: int, type_name: str) -> str:
    """The key of the `index`-th message of `type_name` published while handling `parent_key`.

    Deterministic, so a retried handler re-publishes the same keys and downstream workers
    deduplicate them.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{parent_key}\x1f{index}\x1f{type_name}"))


# Prefix of keys the framework derives from a message's content (never a sender's own key:
# senders' keys are opaque, but this prefix marks the derived ones in the DLQ and in logs).
CONTENT_KEY_PREFIX = "fw-content-"


def content_key(type_name: str, body: bytes) -> str:
    """A stable key for a message that came without one: a hash of its type and body.

    Two messages with the same type and body get the same key (one effect for both);
    a message's retries, redeliveries and DLQ copy keep it.
    """
    digest = hashlib.blake2b(type_name.encode(), digest_size=20)
    digest.update(b"\x00")
    digest.update(body)
    return CONTENT_KEY_PREFIX + digest.hexdigest()
