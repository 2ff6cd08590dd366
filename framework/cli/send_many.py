"""`framework send --count N`: the same message N times, confirmed, with a progress bar."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from framework.bus import Bus
from framework.keys import new_key
from framework.messages import Command, Event, Message
from framework.settings import Settings

IN_FLIGHT = 64  # unconfirmed publishes at once: fast, yet a refusal stops the run quickly


def load_keys(key: str | None, count: int) -> list[str]:
    """`KEY-1 .. KEY-N` when a key is given (re-running sends duplicates), else fresh keys."""
    prefix = key or new_key()
    return [f"{prefix}-{n}" for n in range(1, count + 1)]


async def send_many(settings: Settings, message: Message, key: str | None,
                    count: int) -> list[str]:
    """Send or publish `message` `count` times; returns the keys once all are confirmed.

    The first failure (Unroutable, Overloaded, PublishTimeout) stops the run and is raised.
    """
    keys = load_keys(key, count)
    slots = asyncio.Semaphore(IN_FLIGHT)
    async with Bus.connect(settings=settings, service="framework-cli") as bus:
        with Progress(TextColumn("sending {task.fields[type]}"), BarColumn(),
                      MofNCompleteColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True)) as progress:
            task = progress.add_task("send", total=count, type=message.type_name)

            async def one(k: str) -> None:
                async with slots:
                    await emit(bus, message, k)
                progress.advance(task)

            try:
                async with asyncio.TaskGroup() as group:
                    for k in keys:
                        group.create_task(one(k))
            except ExceptionGroup as failed:  # report the first failure as one error line
                raise failed.exceptions[0] from None
    return keys


async def emit(bus: Bus, message: Message, key: str | None) -> str:
    """Send a command or publish an event; returns its key once confirmed."""
    if isinstance(message, Command):
        return await bus.send(message, idempotency_key=key)
    if isinstance(message, Event):
        return await bus.publish(message, idempotency_key=key)
    raise click.UsageError(f"{message.type_name} is neither a Command nor an Event")
