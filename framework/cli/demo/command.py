"""The demo's run: every example service, orders pushed through a flaky gateway, each order
accounted for; exit 0 only if every one is paid, declined, or in a DLQ with a reason.

Imports the example packages `services` and `schemas`: import it only after
`framework.cli.demo.examples.use_examples()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from framework.bus import Bus
from framework.cli.demo.broker import demo_broker
from framework.cli.demo.fleet import WORKERS, Fleet, as_processes, in_process
from framework.cli.demo.tally import Tally
from framework.cli.demo.view import live_table, summary_table
from framework.cli.demo.watch import Depths, delete_observer, observer, peek_dead_letters
from framework.ops import eventloop
from framework.ops.logs import configure_logging
from framework.publish.send_retry import RetryOnOverload
from framework.settings import Settings
from schemas.orders import PlaceOrder
from services.payments.gateway import GatewaySettings

POISON_AMOUNT = 50_000_000  # over the orders service's limit: refused for good (DLQ)


@dataclass(frozen=True)
class Plan:
    count: int
    wait: float
    processes: bool
    poison: float
    duplicates: float
    gateway: GatewaySettings

    def every(self, share: float) -> int:
        """Every n-th order gets this treatment (0: none)."""
        return 0 if share <= 0 else max(round(1 / share), 1)


def run_demo(settings: Settings, plan: Plan) -> int:
    """Run the demo on `settings`' broker (or a fallback); the exit code."""
    return eventloop.run(_demo(settings, plan))


async def _demo(settings: Settings, plan: Plan) -> int:
    console = Console(stderr=True)
    # The services' retry and dead-letter logs would drown the live view; the table shows them.
    configure_logging(settings.log_format, "critical", library_level="critical", force=True)
    async with (
        demo_broker(settings.amqp_url.get_secret_value()) as (url, source),
        Bus.connect(url, settings=settings, service="demo") as bus,
    ):
        console.print(f"broker: [bold]{bus.masked_url}[/] ({source})")
        return await _run(bus, url, plan, console)


async def _run(bus: Bus, url: str, plan: Plan, console: Console) -> int:
    tally = Tally(prefix=f"demo-{uuid.uuid4().hex[:8]}-", expected=plan.count)
    observer_cls = observer(tally)
    await delete_observer(bus, observer_cls)  # leftovers of a crashed run
    for cls in WORKERS:
        await bus.declare(cls)
    started = time.perf_counter()
    watch = await bus.consume_channel(prefetch=0)
    depths = Depths(watch)
    await depths.remember_baseline()
    watcher = observer_cls(bus)
    watching = asyncio.create_task(watcher.run())
    fleet = Fleet()
    try:
        await watcher.wait_ready()
        async with _services(bus, url, plan, depths) as fleet:
            ok = await _drive(bus, plan, tally, fleet, depths, console)
    finally:
        await watcher.stop()
        await watching
        for cls in WORKERS[1:3]:  # orders, payments: where an order can be dead-lettered
            await peek_dead_letters(bus, cls.queue, tally)
        await delete_observer(bus, observer_cls)
        await watch.close()
    console.print()
    console.print(summary_table(tally, fleet, time.perf_counter() - started, _sends(plan)))
    if fleet.log_dir is not None:
        console.print(f"service logs: {fleet.log_dir}")
    return _verdict(tally, ok, console)


@contextlib.asynccontextmanager
async def _services(bus: Bus, url: str, plan: Plan, depths: Depths) -> AsyncIterator[Fleet]:
    if plan.processes:
        log_dir = Path(tempfile.mkdtemp(prefix="framework-demo-"))
        async with as_processes(url, plan.gateway, log_dir, depths.all_consuming) as fleet:
            yield fleet
    else:
        async with in_process(bus, plan.gateway) as fleet:
            yield fleet


def _sends(plan: Plan) -> int:
    dup = plan.every(plan.duplicates)
    return plan.count + (0 if dup == 0 else len(range(dup - 1, plan.count, dup)))


def _order(tally: Tally, plan: Plan, n: int) -> PlaceOrder:
    poison = plan.every(plan.poison)
    amount = POISON_AMOUNT if poison and n % poison == poison // 2 else 500 + n % 9000
    return PlaceOrder(order_id=f"{tally.prefix}{n}", customer_id=f"c{n % 50}", amount_cents=amount)


async def _drive(
    bus: Bus, plan: Plan, tally: Tally, fleet: Fleet, depths: Depths, console: Console
) -> bool:
    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    sending = progress.add_task("sent", total=plan.count)
    settling = progress.add_task("accounted", total=plan.count)
    rows = await depths.rows()
    with Live(
        Group(progress, live_table(rows, fleet, tally)),
        console=console,
        refresh_per_second=4,
        transient=False,
    ) as live:
        sender = asyncio.create_task(_send_all(bus, plan, tally, progress, sending))
        try:
            async with asyncio.timeout(plan.wait):
                while True:
                    rows = await depths.rows()
                    dead = depths.new_dead(rows, "orders", "payments")
                    done = len(tally.outcomes) + dead
                    progress.update(settling, completed=min(done, plan.count))
                    live.update(Group(progress, live_table(rows, fleet, tally)))
                    receipts_due = len(tally.receipts) + depths.new_dead(
                        rows, "notifications", "notifications.receipts"
                    )
                    if sender.done() and sender.exception() is not None:
                        break  # reported below; waiting longer cannot help
                    if sender.done() and done >= plan.count and receipts_due >= len(tally.outcomes):
                        break
                    await asyncio.sleep(0.25)  # the broker pushes no depth events: poll
            return sender.exception() is None
        except TimeoutError:
            console.print(f"[red]timed out after {plan.wait:g}s[/]")
            return False
        finally:
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                console.print(f"[red]sending failed: {sender.exception()!r}[/]")
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender


async def _send_all(bus: Bus, plan: Plan, tally: Tally, progress: Progress, task: object) -> None:
    """Send every order (a bounded number in flight), some twice with the same key."""
    dup = plan.every(plan.duplicates)
    limit = asyncio.Semaphore(64)
    retry = RetryOnOverload(within=30.0)

    async def one(n: int) -> None:
        order = _order(tally, plan, n)
        key = f"{order.order_id}-place"
        async with limit:
            tally.sent_at[order.order_id] = time.perf_counter()
            await bus.send(order, idempotency_key=key, retry=retry)
            if dup and n % dup == dup - 1:
                await bus.send(order, idempotency_key=key, retry=retry)
        progress.update(task, advance=1)  # type: ignore[arg-type]

    async with asyncio.TaskGroup() as group:
        for n in range(plan.count):
            group.create_task(one(n))


def _verdict(tally: Tally, finished: bool, console: Console) -> int:
    missing = tally.missing() + [f"(never sent: {tally.expected - len(tally.sent_at)})"] * (
        len(tally.sent_at) < tally.expected
    )
    if finished and tally.all_accounted():
        console.print(f"[green]every order accounted for: {tally.expected}/{tally.expected}[/]")
        return 0
    shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    console.print(f"[red]{len(missing)} orders not accounted for: {shown}[/]")
    return 1
