"""A worker with a database, run as a real subprocess (`framework run`) and SIGKILLed by
tests/integration/test_outbox_crashes.py and tests/chaos/test_outbox_db_restart.py.

Each AddItem inserts one row into `items` (no unique constraint: a handler that ran twice
after its commit would show as two rows) and publishes ItemAdded, in one transaction.
Settings from the environment: OUTBOX_QUEUE, OUTBOX_DATABASE, OUTBOX_HANDLER_DELAY (seconds
the handler sleeps inside its transaction, to widen the window a kill can land in).
"""

from __future__ import annotations

import asyncio
import os
import random

from framework import Command, Context, Event, Worker


class AddItem(Command):
    type_name = "tests.outbox.AddItem"
    item_id: str


class ItemAdded(Event):
    type_name = "tests.outbox.ItemAdded"
    item_id: str


SQLITE_TABLE = "CREATE TABLE IF NOT EXISTS items (item_id TEXT NOT NULL, written_at REAL)"
POSTGRES_TABLE = "CREATE TABLE IF NOT EXISTS items (item_id text NOT NULL, written_at float8)"


class ItemWorker(Worker):
    queue = os.environ.get("OUTBOX_QUEUE", "tests.outbox.unset")
    database = os.environ.get("OUTBOX_DATABASE")
    prefetch = 16
    timeout = 10.0
    delivery_limit = 100  # every SIGKILL returns the unacked deliveries, counting one each
    retry_base_delay = 0.05
    retry_max_delay = 0.5

    async def handle(self, msg: AddItem, ctx: Context) -> None:
        delay = float(os.environ.get("OUTBOX_HANDLER_DELAY", "0"))
        async with ctx.transaction() as tx:
            if str(self.database).startswith("sqlite"):
                await tx.execute("INSERT INTO items VALUES (?, julianday('now'))", msg.item_id)
            else:
                await tx.execute(
                    "INSERT INTO items VALUES ($1, extract(epoch FROM now()))", msg.item_id
                )
            await ctx.publish(ItemAdded(item_id=msg.item_id))
            if delay:
                await asyncio.sleep(random.uniform(0, delay))
