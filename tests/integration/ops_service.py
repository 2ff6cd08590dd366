"""Message type and worker for the operator-tooling tests, named from the environment so a
subprocess (`framework send --module`, `framework run`) uses the same names as the test."""

from __future__ import annotations

import os

from framework import Command, Context, PermanentError, Worker


class Job(Command):
    type_name = os.environ.get("OPS_TYPE", "tests.ops.Job")
    job_id: str
    poison: bool = False


class JobWorker(Worker):
    queue = os.environ.get("OPS_QUEUE", "tests.ops.unset")

    async def handle(self, msg: Job, ctx: Context) -> None:
        if msg.poison:
            raise PermanentError(f"job {msg.job_id} is poison")
