"""`framework send --count N` sends N confirmed copies with keys KEY-1 .. KEY-N."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from framework import Bus, Command, Context, Overloaded, Worker
from framework.testing import BrokerAdmin
from tests.integration.cli_runner import framework


class Load(Command):
    type_name = f"tests.ops.Load.{uuid.uuid4().hex[:8]}"  # unique per run: no other binding
    job_id: str


async def test_send_count_with_derived_keys(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """25 messages land in the queue, keyed load-1 .. load-25, with a progress bar on stderr."""
    load_type = Load.type_name
    env = {"OPS_TYPE": load_type}  # the subprocess's ops_service.Job gets this type name

    class LoadWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Load, ctx: Context) -> None:  # pragma: no cover
            pass

    await bus.declare(LoadWorker)
    try:
        result = await asyncio.to_thread(
            framework,
            amqp_url,
            "send",
            load_type,
            '{"job_id": "x"}',
            "--count",
            "25",
            "--key",
            "load",
            "--module",
            "tests.integration.ops_service",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"sent 25 x {load_type}: keys load-1 .. load-25"
        assert "25/25" in result.stderr
        drained = await broker_admin.drain(queue_name)
        assert sorted(m.message_id or "" for m in drained) == sorted(
            f"load-{n}" for n in range(1, 26)
        )
    finally:
        await broker_admin.delete_worker_queues(queue_name, LoadWorker(bus).spec.policy.tiers_ms())


def test_send_count_invalid_body_is_one_line(amqp_url: str) -> None:
    """Validation happens once, before any publish: one `error:` line naming the field."""
    result = framework(
        amqp_url,
        "send",
        "tests.ops.Job",
        '{"poison": true}',
        "--count",
        "5",
        "--module",
        "tests.integration.ops_service",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: tests.ops.Job: field 'job_id': Field required"
    ]


async def test_send_count_failure_names_each_unconfirmed_key(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A full queue refuses the copies: one error line names every key not confirmed, with
    its fate, and how to send them again under the same keys."""
    load_type = Load.type_name

    class Bounded(Worker):
        queue = queue_name
        max_queue_length = 2

        async def handle(self, msg: Load, ctx: Context) -> None:  # pragma: no cover
            pass

    await bus.declare(Bounded)
    try:
        for n in range(5):  # full (3.10 quorum queues may admit one past the limit)
            with contextlib.suppress(Overloaded):
                await bus.send(Load(job_id="x"), idempotency_key=f"before-{n}")
        result = await asyncio.to_thread(
            framework,
            amqp_url,
            "send",
            load_type,
            '{"job_id": "x"}',
            "--count",
            "30",
            "--key",
            "full",
            "--module",
            "tests.integration.ops_service",
            env={"OPS_TYPE": load_type},
        )
        assert result.returncode == 1, result.stderr
        (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert line.startswith(
            f"error: 30 of 30 x {load_type} not confirmed (0 confirmed); "
            "Overloaded: full-1 .. full-30; first error: "
        )
        assert line.endswith(
            "send them again under the same keys with --key full (copies "
            "already confirmed are absorbed as duplicates by the workers)"
        )
        queued = [m.message_id or "" for m in await broker_admin.drain(queue_name)]
        assert queued and all(k.startswith("before-") for k in queued)
    finally:
        await broker_admin.delete_worker_queues(queue_name, Bounded(bus).spec.policy.tiers_ms())
