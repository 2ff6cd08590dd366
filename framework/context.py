"""What a handler sees of its delivery, and how it publishes follow-up messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from framework.keys import derive_key
from framework.messages import Command, Event, Message
from framework.tracing import child_traceparent

if TYPE_CHECKING:
    from framework.transport import Transport


@dataclass
class Context:
    """Per-delivery context passed to `Worker.handle`.

    Messages published through it get keys derived from the incoming key, so a retried
    handler re-publishes the same keys; they carry this conversation's correlation_id.
    """

    bus: Transport
    queue: str
    message_id: str
    correlation_id: str
    attempt: int
    causation_id: str | None = None
    deadline_ms: int | None = None
    traceparent: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    log: Any = None
    _published: int = 0

    @property
    def deadline(self) -> datetime | None:
        """When the sender stops caring about the result (None: no deadline)."""
        if self.deadline_ms is None:
            return None
        return datetime.fromtimestamp(self.deadline_ms / 1000, tz=UTC)

    def _next_key(self, message: Message) -> str:
        self._published += 1
        return derive_key(self.message_id, self._published, message.type_name)

    async def publish(self, event: Event, *, idempotency_key: str | None = None) -> str:
        """Publish an event caused by this delivery; returns its (derived) key once confirmed."""
        key = idempotency_key or self._next_key(event)
        return await self.bus.publish(
            event,
            idempotency_key=key,
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            traceparent=child_traceparent(self.traceparent),
        )

    async def send(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        deadline: datetime | None = None,
        ttl: float | None = None,
    ) -> str:
        """Send a command caused by this delivery; returns its (derived) key once confirmed."""
        key = idempotency_key or self._next_key(command)
        return await self.bus.send(
            command,
            idempotency_key=key,
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            traceparent=child_traceparent(self.traceparent),
            deadline=deadline,
            ttl=ttl,
        )
