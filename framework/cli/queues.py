"""`framework queues`: depth, consumers, retry and DLQ depth, rates, drain time, replicas;
and the scheduled sends waiting in the countdown (the `fw.schedule` row, `sched`)."""

from __future__ import annotations

import asyncio
import json

import click
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from framework.cli.broker import BrokerSession
from framework.cli.context import state
from framework.ops.queue_source import Snapshot, read_stats
from framework.ops.queue_stats import DEFAULT_TARGET_DRAIN, QueueStats, backlog, trend


@click.command("queues")
@click.argument("queue_names", nargs=-1, metavar="[QUEUE]...")
@click.option(
    "--filter",
    "pattern",
    default=None,
    metavar="PATTERN",
    help="Only queues matching this glob (orders*) or containing this text.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.2),
    default=None,
    metavar="N",
    help="Redraw every N seconds with a trend arrow per queue (Ctrl-C stops).",
)
@click.option(
    "--target-drain",
    type=click.FloatRange(min=1),
    default=DEFAULT_TARGET_DRAIN,
    show_default=True,
    help="Seconds a backlog should take to drain (for replicas).",
)
@click.pass_context
def queues_command(
    ctx: click.Context,
    queue_names: tuple[str, ...],
    pattern: str | None,
    as_json: bool,
    watch: float | None,
    target_drain: float,
) -> None:
    """Show framework worker queues (all of them, or the QUEUEs named)."""
    if as_json and watch is not None:
        raise click.UsageError("--json and --watch do not go together")
    settings = state(ctx).settings

    async def read(session: BrokerSession) -> Snapshot:
        return await read_stats(
            session.management,
            session.connection,
            queue_names,
            pattern=pattern,
            target_drain=target_drain,
        )

    async def once() -> None:
        async with BrokerSession(settings) as session:
            snapshot = await read(session)
            broker = session.masked_url
        if as_json:
            click.echo(json.dumps([row.as_json() for row in snapshot.rows], indent=2))
            _warn(snapshot)
        else:
            _console().print(render(snapshot, {}, broker))

    async def watching(interval: float) -> None:
        previous: dict[str, int] = {}
        async with BrokerSession(settings) as session:
            snapshot = await read(session)
            broker = session.masked_url
            with Live(render(snapshot, {}, broker), console=_console(), auto_refresh=False) as live:
                while True:
                    previous = {row.name: backlog(row) for row in snapshot.rows}
                    await asyncio.sleep(interval)
                    snapshot = await read(session)
                    live.update(render(snapshot, previous, session.masked_url), refresh=True)

    try:
        asyncio.run(once() if watch is None else watching(watch))
    except KeyboardInterrupt:  # the way to leave --watch
        return


def render(snapshot: Snapshot, previous: dict[str, int], broker: str | None = None) -> Table:
    """The queues table; `previous` backlogs (by queue) give the trend arrows; `broker` (the
    masked URL of the node read) goes into the title."""
    source = snapshot.rows[0].source if snapshot.rows else "management"
    caption = (
        "rates: management API"
        if source == "management"
        else f"rates unavailable ({snapshot.note})"
    )
    title = "framework queues" + (f" on {broker}" if broker else "")
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    table.add_column("queue", overflow="fold", ratio=1)
    columns = ("ready", "unack", "cons", "retry", "dlq", "in/s", "out/s", "drain", "repl", "sched")
    for column in (*columns, "±"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for row in snapshot.rows:
        table.add_row(
            row.name,
            str(row.ready),
            _opt(row.unacked),
            str(row.consumers),
            str(row.retry),
            _dlq(row),
            _rate(row.publish_rate),
            _rate(row.deliver_rate),
            row.drain,
            _opt(row.suggested_replicas),
            str(row.scheduled),
            trend(previous.get(row.name), backlog(row)),
        )
    if not snapshot.rows:
        table.add_row("(no framework queues)", *[""] * 11)
    return table


def _console() -> Console:
    console = Console()
    if not console.is_terminal:  # piped: no terminal to fit, keep long queue names whole
        console = Console(width=max(console.width, 140))
    return console


def _opt(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _dlq(row: QueueStats) -> str:
    return f"[red]{row.dlq}[/]" if row.dlq else "0"


def _warn(snapshot: Snapshot) -> None:
    if snapshot.rows and snapshot.rows[0].source == "amqp":
        click.echo(f"warning: rates unavailable: {snapshot.note}", err=True)
