"""`framework demo`: run the example orders service in-process and push orders through it."""

from __future__ import annotations

import asyncio
import time
import uuid

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from framework.bus import Bus
from framework.cli.context import state
from framework.context import Context
from framework.settings import Settings
from schemas.orders import PlaceOrder
from services.orders.worker import OrderWorker


@click.command("demo")
@click.option("--orders", "count", default=1000, show_default=True, type=click.IntRange(1),
              help="How many PlaceOrder commands to send.")
@click.option("--timeout", "wait", default=120.0, show_default=True, type=click.FloatRange(1),
              help="Seconds to wait for every order to be handled.")
@click.pass_context
def demo_command(ctx: click.Context, count: int, wait: float) -> int:
    """Start the orders worker, send orders with a progress bar, wait until all are handled."""
    return asyncio.run(_demo(state(ctx).settings, count, wait))


async def _demo(settings: Settings, count: int, wait: float) -> int:
    console = Console(stderr=True)
    handled: set[str] = set()
    all_handled = asyncio.Event()

    class DemoOrderWorker(OrderWorker):
        async def handle(self, msg: PlaceOrder, ctx: Context) -> None:
            await super().handle(msg, ctx)
            if msg.order_id.startswith(f"demo-{run_id}-"):
                handled.add(msg.order_id)
            if len(handled) >= count:
                all_handled.set()

    run_id = uuid.uuid4().hex[:8]  # leftovers of earlier runs never count towards this one
    started = time.perf_counter()
    async with Bus.connect(settings=settings, service="demo") as bus:
        console.print(f"connected to [bold]{bus.masked_url}[/]")
        worker = DemoOrderWorker(bus)
        run = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            with _progress(console) as progress:
                sending = progress.add_task("sending orders", total=count)
                handling = progress.add_task("handled", total=count)
                for n in range(count):
                    order = PlaceOrder(order_id=f"demo-{run_id}-{n}", customer_id=f"c{n % 50}",
                                       amount_cents=100 + n)
                    await bus.send(order, idempotency_key=f"demo-{run_id}-order-{n}")
                    progress.update(sending, completed=n + 1)
                    progress.update(handling, completed=len(handled))
                async with asyncio.timeout(wait):
                    while not all_handled.is_set():
                        progress.update(handling, completed=len(handled))
                        await asyncio.sleep(0.1)
                progress.update(handling, completed=len(handled))
        except TimeoutError:
            console.print(f"[red]only {len(handled)} of {count} orders handled in {wait:g}s[/]")
        finally:
            await worker.stop()
            await run
    elapsed = time.perf_counter() - started
    table = Table(title="demo summary")
    for column in ("sent", "handled", "retried", "dead-lettered", "duplicates", "wall time"):
        table.add_column(column, justify="right")
    s = worker.stats
    table.add_row(str(count), str(s.handled), str(s.retried), str(s.dead_lettered),
                  str(s.duplicates), f"{elapsed:.1f}s")
    console.print(table)
    return 0 if len(handled) == count else 1


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)
