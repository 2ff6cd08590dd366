"""Declare the scheduled-send countdown (`framework.publish.scheduling.stages`) on the broker.

Idempotent, like every declaration: a bus declares it before its first scheduled send and
again after each reconnect. The stages are shared by every service of the vhost (they
know no worker queue: a due command enters `fw.commands` with its own routing key).
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity

from framework.errors import ConfigurationError
from framework.publish.scheduling import Stage, stages
from framework.wire import names


def wait_queue_arguments(stage: Stage) -> dict[str, Any]:
    """A wait queue: durable quorum, every message held exactly `wait_ms`, then
    dead-lettered (at least once) to the next stage with its own routing key."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": stage.wait_ms,
        "x-dead-letter-exchange": stage.next_exchange,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
    }


def binding_arguments(stage: Stage, bit: str) -> dict[str, Any]:
    return {"x-match": "all", stage.header: bit}


async def declare_schedule(connection: AbstractConnection) -> None:
    """Declare every stage's exchange, wait queue and the two bindings that choose between
    them. A user who may not (a service user in production) gets by if an administrator
    declared them (`framework declare-exchanges --schedule`): then they are only checked,
    passively; if they are missing, `ConfigurationError` says what to run."""
    try:
        await _declare(connection)
    except ChannelAccessRefused as exc:
        if not await _all_present(connection):
            raise ConfigurationError(
                "this user may not declare the scheduled-send countdown (fw.schedule.* queues "
                "and exchanges) and it does not exist yet: an administrator runs `framework "
                "declare-exchanges --schedule` (or grant configure, write and read on "
                f"^fw\\.schedule\\..*$); {exc}"
            ) from exc


async def _all_present(connection: AbstractConnection) -> bool:
    """True if every stage's exchange and queue exist (passive checks need no permission)."""
    try:
        async with connection.channel(publisher_confirms=False) as channel:
            for stage in stages():
                await channel.declare_exchange(
                    stage.exchange, aio_pika.ExchangeType.HEADERS, durable=True, passive=True
                )
                await channel.declare_queue(stage.queue, passive=True)
    except ChannelNotFoundEntity:
        return False
    return True


async def _declare(connection: AbstractConnection) -> None:
    all_stages = stages()
    async with connection.channel(publisher_confirms=False) as channel:
        exchanges = {
            s.exchange: await channel.declare_exchange(
                s.exchange, aio_pika.ExchangeType.HEADERS, durable=True
            )
            for s in all_stages
        }
        commands = await channel.get_exchange(names.COMMANDS_EXCHANGE, ensure=False)
        for stage in all_stages:
            queue = await channel.declare_queue(
                stage.queue, durable=True, arguments=wait_queue_arguments(stage)
            )
            await queue.bind(exchanges[stage.exchange], "", arguments=binding_arguments(stage, "1"))
            following = exchanges.get(stage.next_exchange, commands)
            await following.bind(
                exchanges[stage.exchange], "", arguments=binding_arguments(stage, "0")
            )
