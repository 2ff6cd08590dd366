"""`framework demo`: the example system end to end, with a live view and a summary."""

from framework.cli.demo.cli import demo_command

__all__ = ["demo_command"]
