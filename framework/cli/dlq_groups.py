"""Failure groups on the command line: one browse of a DLQ into per-group aggregates, the
table and JSON `framework dlq groups` prints, and the group `--group` names."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from framework.cli.broker import BrokerSession
from framework.errors import UnknownGroup
from framework.ops import dlq
from framework.ops.dead_letter_headers import DeadLetteredMessage
from framework.ops.failure_groups import FailureGroup, FailureGroups
from framework.ops.scaling import format_duration
from framework.wire import names

PIPED_WIDTH = 1000  # as `dlq list`: a piped table keeps its natural width


async def read_groups(session: BrokerSession, queue: str) -> FailureGroups:
    """Every message of `Q.dlq` browsed (nothing removed) into its group's aggregate; a
    progress bar on stderr when it is a terminal."""
    connection = await session.connection()
    waiting = await dlq.depth(connection, queue)
    groups = FailureGroups()
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(f"reading {names.dlq_name(queue)}", total=waiting)

        def visit(message: DeadLetteredMessage) -> None:
            groups.add(message)
            progress.advance(task)

        await dlq.scan(connection, queue, visit)
    return groups


async def find_group(session: BrokerSession, queue: str, group_id: str) -> FailureGroup:
    """The group `group_id` of `Q.dlq`; `UnknownGroup` (naming `dlq groups`) if none."""
    group = (await read_groups(session, queue)).get(group_id)
    if group is None:
        raise UnknownGroup(
            f"no failure group {group_id!r} in {names.dlq_name(queue)}: "
            f"`framework dlq groups {queue}` lists its groups"
        )
    return group


def print_groups(queue: str, rows: list[FailureGroup], as_json: bool) -> None:
    """The groups as a JSON list, or a table (largest group first)."""
    if as_json:
        click.echo(json.dumps([g.summary() for g in rows], indent=2, ensure_ascii=False))
        return
    now = datetime.now(UTC)
    total = sum(g.count for g in rows)
    table = Table(title=f"{names.dlq_name(queue)}: {total} messages in {len(rows)} groups")
    table.add_column("group", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("exception", no_wrap=True)
    table.add_column("error", overflow="ellipsis", no_wrap=True)
    table.add_column("first seen", justify="right", no_wrap=True)
    table.add_column("last seen", justify="right", no_wrap=True)
    table.add_column("example key", no_wrap=True)
    for g in rows:
        table.add_row(
            g.cause.group_id,
            str(g.count),
            g.cause.reason,
            g.cause.exception_type or "-",
            g.cause.error[:80],
            _ago(g.first_seen, now),
            _ago(g.last_seen, now),
            g.example_key,
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPED_WIDTH)
    console.print(table)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "?"
    return f"{format_duration(max((now - when).total_seconds(), 0.0))} ago"
