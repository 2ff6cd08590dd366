"""A worker that holds its acks for a long time (run as a subprocess by test_ack_window).

Effects go to a file; the idempotency store is whatever FRAMEWORK_IDEMPOTENCY_URL says.
"""

from __future__ import annotations

import os
from pathlib import Path

from framework import Command, Context, Worker


class Record(Command):
    type_name = "tests.ackwindow.Record"
    n: int


class HoldingAcksWorker(Worker):
    queue = os.environ.get("ACKWINDOW_QUEUE", "tests.ackwindow.unset")
    prefetch = 64  # the held window is at most half the prefetch: room for all 20 messages
    ack_batch_size = 100_000
    ack_max_delay = 60.0

    async def handle(self, msg: Record, ctx: Context) -> None:
        # synchronous on purpose: the effect is on disk before the handler returns
        with Path(os.environ["ACKWINDOW_EFFECTS"]).open("a") as effects:  # noqa: ASYNC230
            effects.write(f"{msg.n}\n")
