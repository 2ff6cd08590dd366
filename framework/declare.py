"""Apply a `Topology` to the broker. Idempotent: run on start, after every reconnect and on
the bus's slow topology check (bindings lost with a deleted exchange come back).

The shared exchanges (fw.commands, fw.events) belong to an administrator: they are checked
passively, which needs no permission, and created only when missing and the user may
configure them (a development broker). A service user in production never needs configure
permission on them, so it cannot delete them either.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from framework.errors import ConfigurationError
from framework.topology import ExchangeSpec, QueueSpec, Topology


async def declare(connection: AbstractConnection, topology: Topology) -> None:
    """Check (or create) the shared exchanges, then declare the worker's own exchange,
    queues and bindings (durable)."""
    for spec in topology.exchanges:
        await ensure_shared_exchange(connection, spec)
    async with connection.channel(publisher_confirms=False) as channel:
        for name in topology.own_exchanges:
            await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
    await declare_queues(connection, topology.queues)
    async with connection.channel(publisher_confirms=False) as channel:
        for binding in (*topology.bindings, *topology.moves):
            queue = await channel.get_queue(binding.queue, ensure=False)
            await queue.bind(binding.exchange, binding.routing_key)


async def declare_queues(connection: AbstractConnection, specs: Sequence[QueueSpec]) -> None:
    """Declare each queue with its arguments, on one channel while nothing goes wrong.

    A queue an older framework declared (dead-lettering through the default exchange) keeps
    working: it is declared again with those arguments, so every other argument is still
    checked. (RabbitMQ checks write permission on the dead-letter exchange only when it
    creates a queue, so a user without write on amq.default may do this.)
    """
    todo = [(spec, spec.arguments) for spec in specs]
    while todo:
        try:
            async with connection.channel(publisher_confirms=False) as channel:
                while todo:
                    spec, arguments = todo[0]
                    await channel.declare_queue(spec.name, durable=True, arguments=dict(arguments))
                    todo.pop(0)
        except ChannelPreconditionFailed as exc:  # the channel is closed: retry on a new one
            spec, arguments = todo[0]
            legacy = spec.legacy_arguments
            if legacy is None or arguments == legacy or "x-dead-letter-exchange" not in str(exc):
                raise
            todo[0] = (spec, legacy)


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
