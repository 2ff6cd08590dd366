"""The largest message body a publish accepts, checked before anything reaches the broker.

RabbitMQ 4.x refuses a body above its `max_message_size` (default 16 MiB; 3.x: 128 MiB) by
closing the publisher's channel, which a confirmed publish only sees as a timeout. The
framework refuses such a body itself, at once, with an error that says what to do.
"""

from __future__ import annotations

from framework.errors import MessageTooLarge

MIB = 1024 * 1024
DEFAULT_MAX_MESSAGE_SIZE = 16 * MIB  # RabbitMQ 4.x's default max_message_size


def refuse_oversized(size: int, limit: int | None, *, routing_key: str, message_id: str) -> None:
    """Raise `MessageTooLarge` when a body of `size` bytes exceeds `limit` (None: no limit)."""
    if limit is None or size <= limit:
        return
    raise MessageTooLarge(
        f"message {message_id} to {routing_key} is {size / MIB:.1f} MiB, above the "
        f"{limit / MIB:g} MiB the broker accepts (max_message_size; RabbitMQ 4.x's default "
        "is 16 MiB): send a reference to the data instead (claim check), or raise the "
        "broker's max_message_size and FRAMEWORK_MAX_MESSAGE_SIZE together",
        routing_key=routing_key,
        message_id=message_id,
    )
