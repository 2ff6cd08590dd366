"""Apply a `Topology` to the broker. Idempotent: run on start and after every reconnect."""

from __future__ import annotations

import re

import aio_pika
from aio_pika.abc import AbstractChannel

from framework.errors import ConfigurationError
from framework.topology import Topology
from framework.urls import mask_text

# which Worker attribute sets a queue argument (for the migration hint)
_SET_BY = {
    "x-delivery-limit": "delivery_limit",
    "x-max-length": "max_length",
    "x-overflow": "max_length",
    "x-dead-letter-strategy": "max_length",
    "x-message-ttl": "retry delays (retry_base_delay / retry_max_delay)",
    "x-queue-type": "the framework (quorum queues only)",
    "x-dead-letter-exchange": "the framework (dead letters go to Q.dlq)",
    "x-dead-letter-routing-key": "the framework (dead letters go to Q.dlq)",
}
_ARG = re.compile(r"inequivalent arg '([^']+)'")


class QueueArgumentsDiffer(ConfigurationError):
    """A queue exists with other arguments than the topology declares (PRECONDITION_FAILED)."""

    def __init__(self, queue: str, detail: str) -> None:
        found = _ARG.search(detail)
        argument = found.group(1) if found else "an argument"
        set_by = _SET_BY.get(argument, "the worker's settings")
        super().__init__(
            f"queue {queue!r} exists with another {argument} than declared ({set_by}): "
            f"{mask_text(detail.split(' - ', 1)[-1])}; to migrate, stop its workers, let it "
            f"drain (or move its messages), delete it (rabbitmqctl delete_queue {queue}) and "
            "start again, or set the worker back to the queue's value"
        )
        self.queue = queue
        self.argument = argument


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange, queue and binding of `topology` (durable)."""
    exchanges = {}
    for spec in topology.exchanges:
        exchanges[spec.name] = await channel.declare_exchange(
            spec.name, aio_pika.ExchangeType(spec.kind), durable=True
        )
    for queue_spec in topology.queues:
        try:
            await channel.declare_queue(
                queue_spec.name, durable=True, arguments=dict(queue_spec.arguments)
            )
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise QueueArgumentsDiffer(queue_spec.name, str(exc)) from exc
    for binding in topology.bindings:
        exchange = exchanges.get(binding.exchange) or binding.exchange
        queue = await channel.get_queue(binding.queue, ensure=False)
        await queue.bind(exchange, binding.routing_key)
