"""`framework send --count N`: the same message N times, confirmed, with a progress bar."""

from __future__ import annotations

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
from framework.errors import SendManyFailed
from framework.messages import Command, Event, Message
from framework.publish.send_batch import send_batch
from framework.publish.send_results import SendResult
from framework.settings import Settings
from framework.wire.keys import new_key

IN_FLIGHT = 64  # unconfirmed publishes at once: fast, yet a refusal stops the run quickly
SHOWN_KEYS = 20  # runs of consecutive keys listed per fate in the failure line


def load_keys(key: str | None, count: int) -> list[str]:
    """`KEY-1 .. KEY-N` when a key is given (re-running sends duplicates), else fresh keys."""
    prefix = key or new_key()
    return [f"{prefix}-{n}" for n in range(1, count + 1)]


async def send_many(settings: Settings, message: Message, key: str | None, count: int) -> list[str]:
    """Send or publish `message` `count` times; returns the keys once all are confirmed.

    The first failure (Unroutable, Overloaded, PublishTimeout) stops new sends; those in
    flight finish. Then `SendManyFailed` says which keys were not confirmed and why.
    """
    keys = load_keys(key, count)
    async with Bus.connect(settings=settings, service="framework-cli") as bus:
        with Progress(
            TextColumn("sending {task.fields[type]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as progress:
            task = progress.add_task("send", total=count, type=message.type_name)

            def advance(result: SendResult) -> None:
                if result.confirmed:
                    progress.advance(task)

            async def one(copy: Message, k: str) -> str:
                return await emit(bus, copy, k)

            results = await send_batch(
                one, [message] * count, keys, window=IN_FLIGHT, on_result=advance
            )
    unconfirmed = [r for r in results if not r.confirmed]
    if unconfirmed:
        raise SendManyFailed(
            failure_report(results, message.type_name, keys[0]),
            results=results,
            message_id=unconfirmed[0].key,
        )
    return keys


def failure_report(results: list[SendResult], type_name: str, first_key: str) -> str:
    """One line: how many were not confirmed, their keys by fate, how to send them again."""
    by_fate: dict[str, list[str]] = {}
    for r in results:
        if not r.confirmed:
            by_fate.setdefault(r.fate, []).append(r.key)
    parts = []
    for fate, keys in by_fate.items():
        runs = key_runs(keys)
        more = f" and {len(runs) - SHOWN_KEYS} more runs" if len(runs) > SHOWN_KEYS else ""
        parts.append(f"{fate}: {', '.join(runs[:SHOWN_KEYS])}{more}")
    failed = sum(len(k) for k in by_fate.values())
    first_error = next((r.error for r in results if r.error is not None), None)
    prefix = first_key.rsplit("-", 1)[0]
    return (
        f"{failed} of {len(results)} x {type_name} not confirmed "
        f"({len(results) - failed} confirmed); {'; '.join(parts)}; first error: "
        f"{first_error}; send them again under the same keys with --key {prefix} "
        f"(copies already confirmed are absorbed as duplicates by the workers)"
    )


def key_runs(keys: list[str]) -> list[str]:
    """`P-3, P-4, P-5, P-9` -> `P-3 .. P-5`, `P-9` (keys made by `load_keys`, in order)."""
    runs: list[list[str]] = []
    for key in keys:
        if runs and _number(runs[-1][-1]) + 1 == _number(key):
            runs[-1].append(key)
        else:
            runs.append([key])
    return [run[0] if len(run) == 1 else f"{run[0]} .. {run[-1]}" for run in runs]


def _number(key: str) -> int:
    return int(key.rsplit("-", 1)[1])


async def emit(bus: Bus, message: Message, key: str | None) -> str:
    """Send a command or publish an event; returns its key once confirmed."""
    if isinstance(message, Command):
        return await bus.send(message, idempotency_key=key)
    if isinstance(message, Event):
        return await bus.publish(message, idempotency_key=key)
    raise click.UsageError(f"{message.type_name} is neither a Command nor an Event")
