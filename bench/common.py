"""What every contender shares: the payload, queue arguments, preloading, cleanup, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Iterable, Sequence

import aiormq
from pydantic import BaseModel

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

#: unacked deliveries per consumer, the same for every contender
PREFETCH = 1000
#: publishes in flight: the batch size of "confirms in windows"
PUBLISH_WINDOW = 500
#: the tuned reference's sliding window of unconfirmed publishes
REFERENCE_WINDOW = 1000
#: the tuned reference acks at the latest once this many handled tags are pending
ACK_EVERY = 500
#: the quorum queue arguments every contender consumes from (as the framework declares them)
QUEUE_ARGS = {"x-queue-type": "quorum", "x-delivery-limit": 10}


def type_name(queue: str) -> str:
    """The message type of one bench queue.

    One type per queue: the framework routes commands by type, so a queue left behind by a
    failed run must never receive another run's messages.
    """
    return f"{queue}.Order"


def amqp_url() -> str:
    return os.environ.get("AMQP_URL") or DEFAULT_URL


class OrderFields(BaseModel):
    """The ~200-byte JSON command every handler validates."""

    order_id: str
    customer_id: str
    sku: str
    quantity: int
    amount_cents: int
    currency: str
    note: str
    sent: float


def make_order(i: int, sent: float = 0.0) -> dict[str, object]:
    return {
        "order_id": uuid.uuid4().hex,
        "customer_id": f"customer-{i % 9973:06d}",
        "sku": f"SKU-{i % 1000:05d}-XL",
        "quantity": 1 + i % 7,
        "amount_cents": 1000 + (i * 37) % 90000,
        "currency": "EUR",
        "note": "express delivery, leave the parcel at the door",
        "sent": sent,
    }


def order_body(i: int, sent: float = 0.0) -> bytes:
    return OrderFields(**make_order(i, sent)).model_dump_json().encode()  # type: ignore[arg-type]


def queue_name(contender: str, workload: str) -> str:
    safe = contender.replace("+", "-")
    return f"bench.{safe}.{workload}.{uuid.uuid4().hex[:8]}"


async def preload(url: str, queue: str, n: int) -> float:
    """Put `n` persistent, confirmed, framework-compatible messages on `queue` (fast path).

    The queue must already exist (each contender declares it its own way).
    Returns the seconds it took.
    """
    t0 = time.perf_counter()
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        pending: set[asyncio.Task[object]] = set()
        failures: list[BaseException] = []

        def done(task: asyncio.Task[object]) -> None:
            pending.discard(task)
            window.release()
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]

        for i in range(n):
            await window.acquire()
            props = aiormq.spec.Basic.Properties(
                delivery_mode=2,
                message_id=uuid.uuid4().hex,
                content_type="application/json",
                message_type=type_name(queue),
                # as the framework sends it: a W3C trace context (the `process` span's
                # parent for framework+otel)
                headers={
                    "fw-attempt": 1,
                    "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
                },
            )
            task = asyncio.ensure_future(
                channel.basic_publish(
                    order_body(i), routing_key=queue, properties=props, wait=False
                )
            )
            pending.add(task)
            task.add_done_callback(done)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if failures:
            raise RuntimeError(f"preload of {queue} failed: {failures[0]!r}")
    finally:
        await conn.close()
    return time.perf_counter() - t0


async def queue_depth(url: str, queue: str) -> int:
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)
    finally:
        await conn.close()


def sweep_leftovers(url: str) -> list[str]:
    """Delete every `bench.*` queue a killed run left behind (needs local rabbitmqctl)."""
    import subprocess

    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("bench.")]
    if names:
        asyncio.run(delete_queues(url, names))
    return names


async def delete_queues(url: str, queues: Iterable[str]) -> None:
    """Delete queues if they exist (quorum queues: if_unused / if_empty must be off)."""
    conn = await aiormq.connect(url)
    try:
        for name in queues:
            channel = await conn.channel()
            with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.queue_delete(name, if_unused=False, if_empty=False)
            if not channel.is_closed:
                await channel.close()
    finally:
        await conn.close()


def summarize(values: Sequence[float]) -> dict[str, float]:
    """median, min and max of repetitions."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(round(q / 100 * len(sorted_values) + 0.5) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def rss_kib(pid: int) -> int:
    """Resident set size of a process from /proc (KiB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_broker_pid() -> int | None:
    """The pid of the local RabbitMQ node (beam.smp running rabbit), if it runs here."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"beam.smp") and b"rabbit" in b" ".join(args):
            return int(entry)
    return None
