"""A transactional inbox and outbox in the service's own database (SQLite, PostgreSQL).

- `Worker.database = "sqlite:///orders.db"` (or `postgresql://...`): handlers get
  `async with ctx.transaction() as tx:`; the inbox row, their own writes and every message
  published through `ctx` inside it commit together; the worker's relay publishes them.
- Outside handlers: `Relay(bus, database).transaction()`, or `bus.outbox(conn)` inside a
  transaction of your own connection; a relay on the same database publishes the rows.
"""

from framework.outbox.database import (
    AlreadyHandled,
    Database,
    DatabaseUnavailable,
    OutboxMisuse,
)
from framework.outbox.factory import open_database
from framework.outbox.relay import Relay, RelayPolicy, RelayStats
from framework.outbox.unit_of_work import Transaction
from framework.outbox.writer import OutboxWriter

__all__ = [
    "AlreadyHandled",
    "Database",
    "DatabaseUnavailable",
    "OutboxMisuse",
    "OutboxWriter",
    "Relay",
    "RelayPolicy",
    "RelayStats",
    "Transaction",
    "open_database",
]
