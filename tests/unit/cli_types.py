"""Message types for the CLI tests (imported with `framework send --module`)."""

from __future__ import annotations

from framework import Command


class CliOrder(Command):
    type_name = "tests.cli.CliOrder"
    order_id: str
    amount_cents: int
