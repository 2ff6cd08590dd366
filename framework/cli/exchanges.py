"""`framework declare-exchanges`: the administrator's step that creates the shared exchanges.

Services only check fw.commands, fw.events and fw.load (load reports) passively (their
users have no configure permission on them); a development broker or a new vhost gets
them from this command, run with an administrator's URL, or from importing
deploy/rabbitmq/definitions.json.
"""

from __future__ import annotations

import asyncio

import click

from framework.cli.broker import BrokerSession
from framework.cli.context import state
from framework.publish.scheduling import STAGES
from framework.resilience.load_status import LOAD_TOPOLOGY
from framework.wire import names
from framework.wire.declare import ensure_shared_exchange
from framework.wire.schedule_declare import declare_schedule
from framework.wire.topology import EXCHANGES


@click.command("declare-exchanges")
@click.option(
    "--schedule",
    is_flag=True,
    help="Also declare the scheduled-send countdown (fw.schedule.*), for service users "
    "that may not declare it themselves.",
)
@click.pass_context
def declare_exchanges_command(ctx: click.Context, schedule: bool) -> None:
    """Create fw.commands (direct), fw.events and fw.load (topic) if missing (needs
    configure rights)."""

    async def main() -> list[tuple[str, bool]]:
        async with BrokerSession(state(ctx).settings) as session:
            connection = await session.connection()
            results = [
                (spec.name, await ensure_shared_exchange(connection, spec))
                for spec in (EXCHANGES + LOAD_TOPOLOGY).exchanges
            ]
            if schedule:
                await declare_schedule(connection)
            return results

    for name, created in asyncio.run(main()):
        click.echo(f"{name}: {'created' if created else 'already there'}")
    if schedule:
        click.echo(f"{names.SCHEDULE_ROW}: declared ({STAGES} stages)")
