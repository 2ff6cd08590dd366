"""Building the envelope of a message a bus sends: one place for both buses."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from framework.consume.deadlines import combine_deadline
from framework.consume.ordering import order_headers
from framework.messages import Message
from framework.ops.traceparent import new_traceparent
from framework.wire.envelope import Envelope, encode_body


def outgoing_envelope(
    message: Message,
    key: str,
    *,
    app_id: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    deadline: datetime | None = None,
    ttl: float | None = None,
    traceparent: str | None = None,
    reply_to: str | None = None,
) -> tuple[Envelope, int | None]:
    """The envelope of a new message and its AMQP expiration in ms (None: no deadline).

    The correlation id defaults to the key (a conversation starts here); the deadline is the
    earlier of `deadline` and now + `ttl`, and the broker may drop the message after it.
    A message class with `ordered_by` gets its order key and bucket headers
    (`framework.consume.ordering`).
    """
    now = time.time()
    now_ms = int(now * 1000)
    deadline_ms = combine_deadline(now_ms, deadline, ttl)
    envelope = Envelope(
        message_id=key,
        type=message.type_name,
        body=encode_body(message),
        correlation_id=correlation_id or key,
        causation_id=causation_id,
        deadline_ms=deadline_ms,
        timestamp=datetime.fromtimestamp(now, UTC),
        app_id=app_id,
        traceparent=traceparent or new_traceparent(),
        reply_to=reply_to,
        headers=order_headers(message),
    )
    expiration = None if deadline_ms is None else max(deadline_ms - now_ms, 1)
    return envelope, expiration
