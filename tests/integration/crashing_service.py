"""A worker run as a real subprocess by the crash-loop test (`framework run`).

It records every handled id in a file (effects outside the worker) and kills its own
process with os._exit on a poison message.
"""

from __future__ import annotations

import os
from pathlib import Path

from framework import Command, Context, Worker


class Task(Command):
    type_name = "tests.crash.Task"
    task_id: str
    crash: bool = False


class CrashingWorker(Worker):
    queue = os.environ.get("CRASH_QUEUE", "tests.crash.unset")
    prefetch = 1
    delivery_limit = 2

    async def handle(self, msg: Task, ctx: Context) -> None:
        if msg.crash:
            os._exit(3)
        # written synchronously on purpose: the effect must be on disk before the ack
        with Path(os.environ["CRASH_EFFECTS"]).open("a") as effects:  # noqa: ASYNC230
            effects.write(f"{msg.task_id}\n")
