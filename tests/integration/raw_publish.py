"""Publishers that send what the framework (and aiormq) never would, as foreign clients do.

`publish_keyless` sends no `message_id` (as pika, amqplib or the management API do; aiormq
always adds one). `publish_poisoned` sends a header table nested
`levels` deep, its bytes built by hand (pamqp's encoder recurses and would fail first).
"""

from __future__ import annotations

import aiormq
from pamqp import commands as spec
from pamqp import encode


async def _publish(
    amqp_url: str, queue: str, body: bytes, properties: spec.Basic.Properties
) -> None:
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.basic_publish(body, routing_key=queue, properties=properties)
    finally:
        await connection.close()


class _KeylessProperties(spec.Basic.Properties):
    """Properties marshalled without the message_id aiormq sets on every publish."""

    def marshal(self) -> bytes:
        self.message_id = None
        return super().marshal()


async def publish_keyless(amqp_url: str, queue: str, body: bytes, *, type_name: str) -> None:
    """Publish (confirmed) `body` to `queue` with no message_id, as pika or amqplib do."""
    await _publish(
        amqp_url,
        queue,
        body,
        _KeylessProperties(message_type=type_name, content_type="application/json"),
    )


def nested_table_bytes(levels: int) -> bytes:
    """A field table {"deep": {"k": {"k": ...}}} nested `levels` deep, encoded by hand."""
    inner = b""
    for _ in range(levels - 1):
        inner = b"\x01kF" + len(inner).to_bytes(4, "big") + inner
    entry = b"\x04deepF" + len(inner).to_bytes(4, "big") + inner
    return len(entry).to_bytes(4, "big") + entry


class _PoisonedProperties(spec.Basic.Properties):
    """Properties whose header table is replaced by pre-built bytes when marshalled."""

    table: bytes = b""

    def marshal(self) -> bytes:
        placeholder = encode.field_table({"deep": "placeholder"})
        marshalled = super().marshal()
        assert marshalled.count(placeholder) == 1
        return marshalled.replace(placeholder, self.table)


async def publish_poisoned(
    amqp_url: str, queue: str, body: bytes, *, message_id: str, type_name: str, levels: int = 1500
) -> int:
    """Publish (confirmed) a message whose headers nest `levels` deep; returns their size."""
    properties = _PoisonedProperties(
        headers={"deep": "placeholder"},
        message_id=message_id,
        message_type=type_name,
        content_type="application/json",
    )
    properties.table = nested_table_bytes(levels)
    await _publish(amqp_url, queue, body, properties)
    return len(properties.table)
