"""Apply a `Topology` to the broker. Idempotent: run on start, after every reconnect and on
the bus's slow topology check (bindings lost with a deleted exchange come back).

The shared exchanges (fw.commands, fw.events) belong to an administrator: they are checked
passively, which needs no permission, and created only when missing and the user may
configure them (a development broker). A service user in production never needs configure
permission on them, so it cannot delete them either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from framework.errors import ConfigurationError
from framework.wire.schedule_declare import declare_schedule
from framework.wire.topology import ExchangeSpec, QueueSpec, Topology
from framework.wire.urls import mask_text

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
OLDER_QUEUE_ADVICE = (
    "declared by an earlier framework version with other arguments, which are kept; to get "
    "the current ones (dead letters through Q.moves, a DLQ's own delivery limit: on RabbitMQ "
    "4.x a DLQ without one drops a dead letter after 20 `framework dlq list` readings) "
    "replay or move its messages, delete it and restart the worker"
)
_log = structlog.get_logger("framework.declare")


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


async def declare(connection: AbstractConnection, topology: Topology) -> None:
    """Check (or create) the shared exchanges, then declare the worker's own exchange,
    queues and bindings (durable; an expiring topology's exchange is auto-delete)."""
    for spec in topology.exchanges:
        await ensure_shared_exchange(connection, spec)
    if topology.schedule:
        await declare_schedule(connection)
    async with connection.channel(publisher_confirms=False) as channel:
        for name in topology.own_exchanges:
            await channel.declare_exchange(
                name, aio_pika.ExchangeType.DIRECT, durable=True, auto_delete=topology.expiring
            )
        for router in topology.routers:
            await channel.declare_exchange(
                router.name,
                aio_pika.ExchangeType(router.kind),
                durable=True,
                auto_delete=topology.expiring,
            )
    await declare_queues(connection, topology.queues)
    async with connection.channel(publisher_confirms=False) as channel:
        for binding in (*topology.bindings, *topology.moves, *topology.partition_bindings):
            queue = await channel.get_queue(binding.queue, ensure=False)
            await queue.bind(
                binding.exchange, binding.routing_key, arguments=dict(binding.arguments) or None
            )
        for link in topology.exchange_bindings:
            destination = await channel.get_exchange(link.destination, ensure=False)
            await destination.bind(link.source, link.routing_key)


async def declare_queues(connection: AbstractConnection, specs: Sequence[QueueSpec]) -> None:
    """Declare each queue with its arguments, on one channel while nothing goes wrong.

    A queue an older framework declared (dead-lettering through the default exchange) keeps
    working: it is declared again with those arguments, so every other argument is still
    checked. (RabbitMQ checks write permission on the dead-letter exchange only when it
    creates a queue, so a user without write on amq.default may do this.)
    The same holds for a DLQ declared before DLQs had their own delivery limit
    (`QueueSpec.fallback`). Any other mismatch is a `QueueArgumentsDiffer` naming the
    argument and how to migrate.
    """
    todo = [(spec, 0) for spec in specs]  # (queue, index into its accepted argument sets)
    first_refusal: str | None = None  # names the argument that differs from the current ones
    while todo:
        try:
            async with connection.channel(publisher_confirms=False) as channel:
                while todo:
                    spec, choice = todo[0]
                    arguments = spec.accepted_arguments()[choice]
                    await channel.declare_queue(spec.name, durable=True, arguments=dict(arguments))
                    if choice:
                        _log.warning(
                            "bus.queue_kept_older_arguments",
                            queue=spec.name,
                            advice=OLDER_QUEUE_ADVICE,
                        )
                    todo.pop(0)
                    first_refusal = None
        except ChannelPreconditionFailed as exc:  # the channel is closed: retry on a new one
            spec, choice = todo[0]
            first_refusal = first_refusal or str(exc)
            if choice + 1 >= len(spec.accepted_arguments()):
                raise QueueArgumentsDiffer(spec.name, first_refusal) from exc
            todo[0] = (spec, choice + 1)


async def ensure_shared_exchange(
    connection: AbstractConnection, spec: ExchangeSpec, *, create: bool = True
) -> bool:
    """Make sure `spec` exists: passive check first; if missing and `create`, declare it
    (needs configure permission). Returns True if it was created here."""
    kind = aio_pika.ExchangeType(spec.kind)
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            await channel.declare_exchange(spec.name, kind, durable=True, passive=True)
        return False
    except ChannelNotFoundEntity:
        if not create:
            raise ConfigurationError(missing_exchange_text(spec.name)) from None
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            await channel.declare_exchange(spec.name, kind, durable=True)
    except ChannelAccessRefused as exc:
        raise ConfigurationError(missing_exchange_text(spec.name)) from exc
    return True


def missing_exchange_text(name: str) -> str:
    """What the operator must do when a shared exchange is missing."""
    return (
        f"exchange {name!r} does not exist and this user may not create it: an administrator "
        "creates the shared exchanges (import deploy/rabbitmq/definitions.json, or run "
        "`framework declare-exchanges` with an administrator's --url)"
    )
