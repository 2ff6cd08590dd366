"""`framework demo`: its options (the run itself is in `command`, imported once the examples are
importable)."""

from __future__ import annotations

import click

from framework.cli.context import state
from framework.cli.demo.examples import use_examples


@click.command("demo")
@click.option(
    "--orders",
    "count",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="How many orders to place.",
)
@click.option(
    "--timeout",
    "wait",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for every order to be accounted for.",
)
@click.option("--processes", is_flag=True, help="Run each service as its own process.")
@click.option(
    "--failure-rate",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of gateway calls that fail transiently.",
)
@click.option(
    "--throttle-rate",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of gateway calls answered 429 Retry-After (retried later, no attempt burned).",
)
@click.option(
    "--decline-rate",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of charges the gateway declines (PaymentFailed).",
)
@click.option(
    "--outage-start",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds after start when the gateway stops answering.",
)
@click.option(
    "--outage",
    "outage",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds the gateway outage lasts (0: none).",
)
@click.option(
    "--latency",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0),
    help="Gateway latency in seconds.",
)
@click.option(
    "--poison",
    default=0.005,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of orders over the amount limit (dead-lettered as permanent).",
)
@click.option(
    "--duplicates",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of orders sent twice with the same idempotency key.",
)
@click.pass_context
def demo_command(
    ctx: click.Context,
    count: int,
    wait: float,
    processes: bool,
    failure_rate: float,
    throttle_rate: float,
    decline_rate: float,
    outage_start: float,
    outage: float,
    latency: float,
    poison: float,
    duplicates: float,
) -> int:
    """Run orders, payments, customers and notifications; place orders; show what happens."""
    use_examples()  # before anything imports the example packages
    from framework.cli.demo.command import Plan, run_demo
    from services.payments.gateway import GatewaySettings

    gateway = GatewaySettings(
        latency=latency,
        failure_rate=failure_rate,
        throttle_rate=throttle_rate,
        decline_rate=decline_rate,
        outage_start=outage_start,
        outage_duration=outage,
    )
    plan = Plan(count, wait, processes, poison, duplicates, gateway)
    return run_demo(state(ctx).settings, plan)
