"""`framework dlq list|show|groups|replay|purge QUEUE`: inspect and repair dead letters."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from framework.cli.broker import BrokerSession
from framework.cli.context import state
from framework.cli.dlq_groups import find_group, print_groups, read_groups
from framework.ops import dlq
from framework.ops.dead_letter_headers import DeadLetteredMessage
from framework.ops.failure_groups import FailureGroup
from framework.ops.scaling import format_duration
from framework.settings import Settings
from framework.wire import names
from framework.wire.header_values import shown_text

T = TypeVar("T")

PIPED_WIDTH = 1000  # columns a piped table may use (errors are cut to 80 characters)


def _run(ctx: click.Context, action: Callable[[BrokerSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with BrokerSession(state(ctx).settings) as session:
            return await action(session)

    return asyncio.run(main())


@click.group("dlq")
def dlq_group() -> None:
    """Inspect, replay and purge a worker queue's dead-letter queue (QUEUE or QUEUE.dlq)."""


@dlq_group.command("list")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Show at most this many messages (oldest first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.pass_context
def list_command(ctx: click.Context, queue: str, limit: int, as_json: bool) -> None:
    """Type, key, reason, error, attempts and age of dead-lettered messages (nothing removed).

    Oldest first. Browsing takes the messages without acking them and closes its channel,
    which puts them back in their place: the same messages in the same order on every call.
    """
    queue = dlq.worker_queue(queue)

    async def browse(session: BrokerSession) -> list[DeadLetteredMessage]:
        return await dlq.browse(await session.connection(), queue, dlq.Selection(limit=limit))

    found = _run(ctx, browse)
    now = datetime.now(UTC)
    if as_json:
        click.echo(json.dumps([d.summary(now) for d in found], indent=2))
        return
    table = Table(title=f"{names.dlq_name(queue)}: {len(found)} shown")
    # keys stay whole (`dlq show` needs them), also when piped: the error text gives way
    key_width = max((len(d.key) for d in found), default=3)
    table.add_column("key", no_wrap=True, min_width=key_width)
    table.add_column("type", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("error", overflow="ellipsis", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    for d in found:
        attempts = "?" if d.attempts is None else str(d.attempts)
        table.add_row(
            d.key, d.type, d.reason, d.error[:80], attempts, format_duration(d.age_seconds(now))
        )
    console = Console()
    if not console.is_terminal:  # piped: the table's natural width, not an assumed 80
        console = Console(width=PIPED_WIDTH)
    console.print(table)


@dlq_group.command("show")
@click.argument("queue")
@click.argument("key")
@click.pass_context
def show_command(ctx: click.Context, queue: str, key: str) -> None:
    """Headers and body of the dead-lettered message with idempotency key KEY."""
    queue = dlq.worker_queue(queue)

    async def find(session: BrokerSession) -> list[DeadLetteredMessage]:
        return await dlq.browse(await session.connection(), queue, dlq.Selection(1, key))

    found = _run(ctx, find)
    if not found:
        raise click.ClickException(f"no message with key {key!r} in {names.dlq_name(queue)}")
    d = found[0]
    facts = {
        "key": d.key,
        "type": d.type,
        "reason": d.reason,
        "error": d.error,
        "attempts": d.attempts,
        "correlation_id": d.correlation_id,
        "dead_at": None if d.dead_at is None else d.dead_at.isoformat(),
    }
    click.echo(
        json.dumps(
            {**facts, "headers": _plain(d.headers), "body": _body(d.body)},
            indent=2,
            ensure_ascii=False,
        )
    )


@dlq_group.command("groups")
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.pass_context
def groups_command(ctx: click.Context, queue: str, as_json: bool) -> None:
    """Dead letters grouped by cause: reason, exception type and error text with ids and
    numbers masked; count, first and last seen, an example key per group (nothing removed).

    The group ids are stable: pass one to `replay --group` or `purge --group`. Every
    message is read once, keeping only per-group totals.
    """
    queue = dlq.worker_queue(queue)

    async def read(session: BrokerSession) -> list[FailureGroup]:
        return (await read_groups(session, queue)).rows()

    print_groups(queue, _run(ctx, read), as_json)


GROUP_HELP = "Only messages of this failure group (an id `dlq groups` prints)."


@dlq_group.command("replay")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=None,
    help="Move at most this many messages (default: all).",
)
@click.option("--key", default=None, help="Only messages with this idempotency key.")
@click.option("--group", default=None, metavar="ID", help=GROUP_HELP)
@click.pass_context
def replay_command(
    ctx: click.Context, queue: str, limit: int | None, key: str | None, group: str | None
) -> None:
    """Move messages back to QUEUE with the attempt counter reset and their keys kept.

    With --group, only that group's messages move; the others stay in the DLQ in order.
    """
    queue = dlq.worker_queue(queue)
    settings = state(ctx).settings
    selection = dlq.Selection(limit, key, group)
    moved = _run(ctx, lambda session: _replay(session, settings, queue, selection))
    click.echo(
        f"replayed {moved} message{'s' * (moved != 1)} from {names.dlq_name(queue)} to {queue}"
    )


async def _replay(
    session: BrokerSession, settings: Settings, queue: str, selection: dlq.Selection
) -> int:
    connection = await session.connection()
    if selection.group is not None:  # an unknown group is an error before anything moves
        waiting = (await find_group(session, queue, selection.group)).count
    else:
        waiting = await dlq.depth(connection, queue)
    total = None if selection.key else min(waiting, selection.limit or waiting)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task(f"replaying to {queue}", total=total)
        return await dlq.replay(
            connection,
            queue,
            selection,
            publish_timeout=settings.publish_timeout,
            on_moved=lambda _: progress.advance(task),
        )


@dlq_group.command("purge")
@click.argument("queue")
@click.option("--group", default=None, metavar="ID", help=GROUP_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge_command(ctx: click.Context, queue: str, group: str | None, yes: bool) -> None:
    """Delete the messages in QUEUE's dead-letter queue (asks first unless --yes).

    Exactly the messages counted are deleted (the oldest ones): any dead-lettered after
    the count stay, and the output says how many are left. With --group, only that
    group's messages are counted and deleted; the others stay in the DLQ in order.
    """
    queue = dlq.worker_queue(queue)
    dead = names.dlq_name(queue)
    which = dead if group is None else f"{dead} (group {group})"

    async def waiting(session: BrokerSession) -> int:
        if group is not None:
            return (await find_group(session, queue, group)).count
        return await dlq.depth(await session.connection(), queue)

    count = _run(ctx, waiting)
    if count and not yes:  # asked with no connection open: a slow answer cannot time it out
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"refusing to delete {_messages(count)} from {which} without confirmation "
                "(stdin is not a terminal): pass --yes"
            )
        click.confirm(f"delete {_messages(count)} from {which}?", abort=True, err=True)

    async def purge(session: BrokerSession) -> tuple[int, int]:
        connection = await session.connection()
        removed = await dlq.purge(connection, queue, count, group=group)
        return removed, await dlq.depth(connection, queue)

    removed, left = _run(ctx, purge)
    click.echo(f"purged {_messages(removed)} from {which}; {left} left")


def _messages(n: int) -> str:
    return f"{n} message{'s' * (n != 1)}"


def _plain(value: Any) -> Any:
    """Header values as JSON: bytes as text, datetimes as ISO strings, tables recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return shown_text(value)
    return value


def _body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
