"""Apply a `Topology` to the broker. Idempotent: run on start and after every reconnect."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel

from framework.topology import Topology


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange, queue and binding of `topology` (durable)."""
    exchanges = {}
    for spec in topology.exchanges:
        exchanges[spec.name] = await channel.declare_exchange(
            spec.name, aio_pika.ExchangeType(spec.kind), durable=True
        )
    for queue_spec in topology.queues:
        await channel.declare_queue(
            queue_spec.name, durable=True, arguments=dict(queue_spec.arguments)
        )
    for binding in topology.bindings:
        exchange = exchanges.get(binding.exchange) or binding.exchange
        queue = await channel.get_queue(binding.queue, ensure=False)
        await queue.bind(exchange, binding.routing_key)
