"""`framework dlq`: list and show without losing anything, replay into a healthy worker once,
purge only when confirmed."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from framework import Bus, Context, PermanentError, Worker
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.cli_runner import REPO, framework
from tests.integration.dlq_harness import cli, cli_json, idle_queue, wait_until
from tests.integration.ops_service import Job


async def test_list_show_replay_and_duplicate_absorbed(
    amqp_url: str, bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A permanent failure is listed with its reason, replayed once healed, handled once;
    replaying a second copy of the handled key is absorbed as a duplicate."""
    healed = False
    handled: Counter[str] = Counter()

    class HealingWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:
            if not healed:
                raise PermanentError("downstream rejects it")
            handled[msg.job_id] += 1

    worker = await worker_factory(HealingWorker)
    dlq = names.dlq_name(queue_name)
    await bus.send(Job(job_id="j1"), idempotency_key="key-j1")
    assert await broker_admin.wait_for_depth(dlq, 1) == 1

    for _ in range(2):  # browsing twice loses nothing
        (row,) = await cli_json(amqp_url, "dlq", "list", queue_name, "--json")
    assert (row["key"], row["type"], row["reason"], row["attempts"]) == (
        "key-j1",
        Job.type_name,
        "permanent",
        1,
    )
    assert "downstream rejects it" in row["error"] and row["age_seconds"] >= 0
    assert await broker_admin.depth(dlq) == 1

    shown = await cli_json(amqp_url, "dlq", "show", dlq, "key-j1")
    assert shown["body"] == {"job_id": "j1", "poison": False}
    assert shown["headers"][names.REASON] == "permanent"
    assert shown["headers"][names.ORIGINAL_QUEUE] == queue_name

    healed = True
    result = await cli(amqp_url, "dlq", "replay", queue_name)
    assert result.returncode == 0, result.stderr
    assert "replayed 1 message from" in result.stdout
    await wait_until(lambda: handled["j1"] == 1)
    assert await broker_admin.depth(dlq) == 0

    # the same key lands in the DLQ again (say, a crash between publish and ack): absorbed
    await broker_admin.publish_raw(
        dlq,
        json.dumps({"job_id": "j1"}).encode(),
        type=Job.type_name,
        message_id="key-j1",
        headers={names.REASON: "exhausted", names.ATTEMPT: 5},
    )
    result = await cli(amqp_url, "dlq", "replay", queue_name, "--key", "key-j1")
    assert result.returncode == 0, result.stderr
    await wait_until(lambda: worker.stats.duplicates == 1)
    assert handled["j1"] == 1


async def test_replay_respects_key_and_limit(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """--key moves only that key; --limit N moves N; the rest stays in the DLQ."""

    class Idle(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:  # pragma: no cover
            pass

    await bus.declare(Idle)
    dlq = names.dlq_name(queue_name)
    try:
        for n in range(5):
            await broker_admin.publish_raw(
                dlq,
                b"{}",
                type=Job.type_name,
                message_id=f"k{n}",
                headers={names.ATTEMPT: 3, names.DEADLINE: 1},
            )
        result = await cli(amqp_url, "dlq", "replay", queue_name, "--key", "k3")
        assert "replayed 1 message" in result.stdout, result.stderr
        result = await cli(amqp_url, "dlq", "replay", queue_name, "--limit", "2")
        assert "replayed 2 messages" in result.stdout, result.stderr
        assert await broker_admin.depth(dlq) == 2
        moved = await broker_admin.drain(queue_name)
        assert [m.message_id for m in moved] == ["k3", "k0", "k1"]
        assert all(m.headers[names.ATTEMPT] == 1 and names.DEADLINE not in m.headers for m in moved)
        assert {m.message_id for m in await broker_admin.drain(dlq)} == {"k2", "k4"}
    finally:
        await broker_admin.delete_worker_queues(queue_name, Idle(bus).spec.policy.tiers_ms())


async def test_broker_dead_lettered_reason_from_x_death(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A message the broker dead-lettered (rejected) is listed with reason `rejected`."""

    class Idle(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:  # pragma: no cover
            pass

    await bus.declare(Idle)
    try:
        await broker_admin.publish_raw(queue_name, b"{}", type=Job.type_name, message_id="rj")
        connection = await aio_pika.connect(amqp_url)
        async with connection, connection.channel() as channel:
            queue = await channel.declare_queue(queue_name, passive=True)
            message = await queue.get(fail=True)
            await message.reject(requeue=False)
        assert await broker_admin.wait_for_depth(names.dlq_name(queue_name), 1) == 1
        (row,) = await cli_json(amqp_url, "dlq", "list", queue_name, "--json")
        assert (row["key"], row["reason"]) == ("rj", "rejected")
        assert "dead-lettered by the broker from" in row["error"]
    finally:
        await broker_admin.delete_worker_queues(queue_name, Idle(bus).spec.policy.tiers_ms())


async def on_terminal(
    amqp_url: str,
    *args: str,
    answer: str,
    before_answer: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, str, str]:
    """Run the CLI with a terminal on stdin; answer its prompt (after `before_answer`).
    Returns (exit code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework",
        *args,
        cwd=REPO,
        stdin=slave,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AMQP_URL": amqp_url, "FRAMEWORK_LOG_LEVEL": "warning"},
    )
    os.close(slave)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        prompt = b""
        async with asyncio.timeout(30):
            while b"? [y/N]" not in prompt:
                chunk = await proc.stderr.read(1024)
                assert chunk, f"no prompt; stderr so far: {prompt!r}"
                prompt += chunk
            if before_answer is not None:
                await before_answer()
            os.write(master, answer.encode() + b"\n")
            out, err = await proc.communicate()
    finally:
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return int(proc.returncode or 0), out.decode(), (prompt + err).decode()


async def test_purge_asks_first_on_a_terminal(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """On a terminal, answering no keeps the messages; --yes purges them and says 0 left."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        for n in range(3):
            await broker_admin.publish_raw(dlq, b"{}", message_id=f"p{n}")
        code, _, err = await on_terminal(amqp_url, "dlq", "purge", queue_name, answer="n")
        assert code != 0 and f"delete 3 messages from {dlq}?" in err
        assert err.strip().endswith("error: aborted")
        assert await broker_admin.depth(dlq) == 3
        done = await cli(amqp_url, "dlq", "purge", queue_name, "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"purged 3 messages from {dlq}; 0 left"
        assert await broker_admin.depth(dlq) == 0


async def test_purge_without_terminal_refuses_and_says_pass_yes(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Piped stdin and no --yes: one error line telling to pass --yes; nothing deleted."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        for n in range(3):
            await broker_admin.publish_raw(dlq, b"{}", message_id=f"p{n}")
        refused = await cli(amqp_url, "dlq", "purge", queue_name, stdin="y\n")
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: refusing to delete 3 messages from {dlq} without confirmation "
            "(stdin is not a terminal): pass --yes"
        ]
        assert await broker_admin.depth(dlq) == 3


async def test_purge_deletes_exactly_what_was_counted(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """5 counted, 50 more dead-lettered while the prompt waits: yes deletes those 5 only,
    the 50 stay and the output says so."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        for n in range(5):
            await broker_admin.publish_raw(dlq, b"{}", message_id=f"seen-{n}")

        async def more_arrive() -> None:
            for n in range(50):
                await broker_admin.publish_raw(dlq, b"{}", message_id=f"new-{n}")

        code, out, err = await on_terminal(
            amqp_url, "dlq", "purge", queue_name, answer="y", before_answer=more_arrive
        )
        assert code == 0, err
        assert f"delete 5 messages from {dlq}?" in err
        assert out.strip() == f"purged 5 messages from {dlq}; 50 left"
        left = await broker_admin.drain(dlq)
        assert [m.message_id for m in left] == [f"new-{n}" for n in range(50)]


async def test_list_shows_the_same_window_and_attempts_every_time(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Three `list --limit 3` calls show the same three keys with the same attempts, also
    for a message the broker dead-lettered (whose DLQ delivery count each browse raises)."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        await broker_admin.publish_raw(
            queue_name,
            b"{}",
            type=Job.type_name,
            message_id="by-broker",
            headers={names.ATTEMPT: 2},
        )
        connection = await aio_pika.connect(amqp_url)
        async with connection, connection.channel() as channel:
            queue = await channel.declare_queue(queue_name, passive=True)
            message = await queue.get(fail=True)
            await message.reject(requeue=False)
        assert await broker_admin.wait_for_depth(dlq, 1) == 1
        for n in range(5):
            await broker_admin.publish_raw(
                dlq,
                b"{}",
                type=Job.type_name,
                message_id=f"d{n}",
                headers={names.REASON: "exhausted", names.ATTEMPTS: 5},
            )
        windows = [
            [
                (r["key"], r["attempts"])
                for r in await cli_json(
                    amqp_url, "dlq", "list", queue_name, "--limit", "3", "--json"
                )
            ]
            for _ in range(3)
        ]
        assert windows == [[("by-broker", 2), ("d0", 5), ("d1", 5)]] * 3
        shown = [await cli_json(amqp_url, "dlq", "show", queue_name, "by-broker") for _ in range(2)]
        assert shown[0] == shown[1]  # headers included: browsing left no trace
        assert shown[0]["attempts"] == 2 and shown[0]["reason"] == "rejected"
        assert await broker_admin.depth(dlq) == 6


async def test_piped_table_keeps_keys_whole(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """`dlq list` into a pipe prints every key in full (what `dlq show` needs)."""
    key = f"order-{'0123456789' * 7}"  # longer than an 80-column table leaves for it
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        await broker_admin.publish_raw(
            dlq,
            b"{}",
            type=Job.type_name,
            message_id=key,
            headers={names.REASON: "permanent", names.ERROR: "ValueError: " + "x" * 200},
        )
        result = await cli(amqp_url, "dlq", "list", queue_name)
        assert result.returncode == 0, result.stderr
        assert key in result.stdout


@pytest.mark.parametrize("command", [("list",), ("show", "k"), ("replay",), ("purge", "--yes")])
def test_unknown_queue_is_one_error_line(amqp_url: str, command: tuple[str, ...]) -> None:
    """Every dlq subcommand on a missing queue: one `error:` line, non-zero exit."""
    name = f"no.such.{os.getpid()}"
    result = framework(amqp_url, "dlq", command[0], name, *command[1:])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: unknown queue '{name}': it has no dead-letter queue '{name}.dlq'"
    ]


async def test_keyless_dlq_messages_are_listed_and_replayed_under_their_content_key(
    amqp_url: str, bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Two DLQ messages without message_id (as the broker's own dead-lettering leaves them)
    are listed under distinct content keys, replayed one by --key, then all: each body is
    handled once, and a second copy of a replayed body is absorbed as a duplicate."""
    from tests.integration.raw_publish import publish_keyless

    handled: Counter[str] = Counter()

    class Replayed(Worker):
        queue = queue_name

        async def handle(self, msg: Job, ctx: Context) -> None:
            handled[msg.job_id] += 1

    await bus.declare(Replayed)
    dlq = names.dlq_name(queue_name)
    for job in ("j1", "j2", "j1"):
        body = json.dumps({"job_id": job}).encode()
        await publish_keyless(amqp_url, dlq, body, type_name=Job.type_name)
    rows = await cli_json(amqp_url, "dlq", "list", queue_name, "--json")
    keys = [row["key"] for row in rows]
    assert len(set(keys)) == 2 and keys[0] == keys[2]
    assert all(key.startswith("fw-content-") for key in keys)
    result = await cli(amqp_url, "dlq", "replay", queue_name, "--key", keys[1])
    assert "replayed 1 message" in result.stdout, result.stderr
    result = await cli(amqp_url, "dlq", "replay", queue_name)
    assert "replayed 2 messages" in result.stdout, result.stderr
    worker = await worker_factory(Replayed)
    await wait_until(lambda: worker.stats.handled + worker.stats.duplicates == 3)
    assert handled == Counter({"j1": 1, "j2": 1}) and worker.stats.duplicates == 1
    assert await broker_admin.depth(dlq) == 0
