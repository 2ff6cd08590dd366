"""The worker the chaos scenarios run as real subprocesses (`framework run`).

Configured by environment so every test gets its own queue and message type:
CHAOS_QUEUE, CHAOS_TYPE, CHAOS_LEDGER (SQLite file), CHAOS_PREFETCH, CHAOS_DELIVERY_LIMIT,
CHAOS_MAX_LENGTH, CHAOS_SERVICE. The handler records its effect in the ledger (outside the
worker) after doing its "work" (a sleep of `work_ms`), so a kill mid-handler is likely.
"""

from __future__ import annotations

import asyncio
import os
import re
from functools import cache
from typing import Any

from framework import Command, Context, PermanentError, Worker
from tests.chaos.ledger import EffectRecorder


class Job(Command):
    type_name = "tests.chaos.Job"
    n: int
    work_ms: int = 0
    mode: str = "ok"  # ok | permanent | crash
    pad: str = ""


def job_class(type_name: str) -> type[Job]:
    """A Job subclass with its own wire type name (one per test run)."""
    name = "Job_" + re.sub(r"\W", "_", type_name)
    return type(name, (Job,), {"type_name": type_name, "__module__": __name__})


@cache
def _recorder() -> EffectRecorder:
    return EffectRecorder(os.environ["CHAOS_LEDGER"], os.getpid())


def worker_class(job: type[Job], **settings: Any) -> type[Worker]:
    """The chaos worker for messages of type `job`, with Worker settings `settings`."""

    async def handle(self: Worker, msg: Job, ctx: Context) -> None:
        if msg.mode == "crash":
            os._exit(3)
        if msg.mode == "permanent":
            raise PermanentError(f"job {msg.n} can never succeed")
        if msg.work_ms:
            await asyncio.sleep(msg.work_ms / 1000)
        _recorder().record(ctx.message_id)

    handle.__annotations__ = {"msg": job, "ctx": Context, "return": None}
    return type("ChaosWorker", (Worker,), {"handle": handle, "__module__": __name__, **settings})


def settings_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "queue": env.get("CHAOS_QUEUE", "tests.chaos.unset"),
        "prefetch": int(env.get("CHAOS_PREFETCH", "8")),
        "delivery_limit": int(env.get("CHAOS_DELIVERY_LIMIT", "10")),
        "timeout": 10.0,
        "retry_base_delay": 0.2,
        "retry_max_delay": 2.0,
        "shutdown_grace": 5.0,
        "service": env.get("CHAOS_SERVICE") or None,
    }
    if env.get("CHAOS_MAX_LENGTH"):
        settings["max_queue_length"] = int(env["CHAOS_MAX_LENGTH"])
    return settings


ChaosJob = job_class(os.environ.get("CHAOS_TYPE", "tests.chaos.Job.unset"))
ChaosWorker = worker_class(ChaosJob, **settings_from_env())
