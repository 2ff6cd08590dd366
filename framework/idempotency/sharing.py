"""Warning at start when the in-process store cannot do its job: several consumers.

`memory://` remembers keys in one process only. With more consumers on the queue (replicas)
a redelivery after a crash, or a duplicate, can reach a process that never saw the key and
run again. The worker reads the queue's consumer count after subscribing (a passive declare)
and says what to set.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from framework.idempotency.memory import MemoryStore

if TYPE_CHECKING:
    from framework.wire.transport import Transport

CHECK_BOUND = 5.0  # seconds the consumer count may take; start-up does not wait longer


def unshared_warning(consumers: int | None, in_process_store: bool) -> bool:
    """Whether to warn: an in-process store and more than one consumer on the queue."""
    return in_process_store and consumers is not None and consumers > 1


async def warn_if_unshared(bus: Transport, queue: str, log: Any) -> None:
    """Log `idempotency.store_not_shared` if `queue` has several consumers and `bus` keeps
    its keys in this process only. Never fails the start: an unanswered count is skipped."""
    in_process = isinstance(bus.idempotency, MemoryStore) and bus.idempotency_url is None
    if not in_process:
        return
    try:
        async with asyncio.timeout(CHECK_BOUND):
            consumers = await bus.consumer_count(queue)
    except Exception as exc:  # noqa: BLE001 - an advisory check never stops a start
        log.debug("idempotency.consumer_count_failed", error=repr(exc))
        return
    if unshared_warning(consumers, in_process):
        log.warning(
            "idempotency.store_not_shared",
            consumers=consumers,
            hint="this worker keeps idempotency keys in memory (memory://) but the "
            "queue has other consumers: a redelivery or duplicate that reaches "
            "another replica runs again. Set FRAMEWORK_IDEMPOTENCY_URL to a "
            "shared store (redis://..., postgresql://...) on every replica",
        )
