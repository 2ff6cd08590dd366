"""The shutdown budget: grace for in-flight work, then `CLOSE_MARGIN` for closing; and
which grace a worker uses."""

from __future__ import annotations

from framework import Command, Context, Settings, Worker
from framework.consume.shutdown import CLOSE_MARGIN, ShutdownBudget
from framework.testing import MemoryBus


class Noop(Command):
    type_name = "tests.shutdown_budget.Noop"


class Patient(Worker):
    queue = "budget.patient"
    shutdown_grace = 45.0

    async def handle(self, msg: Noop, ctx: Context) -> None:
        return None


def test_remaining_counts_down_to_zero_then_the_close_margin() -> None:
    """10 s grace: 4 s left after 6 s, none after 12 s, when closing has 0 s left too."""
    now = [100.0]
    budget = ShutdownBudget.start(10.0, clock=lambda: now[0])
    now[0] = 106.0
    assert (budget.remaining(), budget.closing_remaining()) == (4.0, 4.0 + CLOSE_MARGIN)
    now[0] = 110.0 + CLOSE_MARGIN
    assert (budget.remaining(), budget.closing_remaining()) == (0.0, 0.0)


async def test_grace_is_the_setting_when_set_else_the_class_attribute() -> None:
    """FRAMEWORK_SHUTDOWN_GRACE (Settings.shutdown_grace) overrides Worker.shutdown_grace."""
    async with MemoryBus() as default, MemoryBus(settings=Settings(shutdown_grace=8)) as set_:
        assert Patient(default).grace == 45.0
        assert Patient(set_).grace == 8.0
