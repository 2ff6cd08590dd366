"""One measurement in a fresh process: `python -m bench.child CONTENDER WORKLOAD [options]`.

Every figure comes from its own process so that no contender inherits another's event loop,
logging configuration, caches or heap. The result is the last stdout line, `RESULT {json}`.
The `worker` workload is the long-lived consumer that workloads D and E drive over stdin;
`S` is workload B for the framework with the idempotency store `--store`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Coroutine
from typing import Any

from bench.common import (
    amqp_url,
    cpu_seconds,
    delete_queues,
    local_broker_pid,
    make_order,
    percentile,
    preload,
    queue_depth,
    queue_name,
)
from bench.contenders import CONTENDERS, Contender, Framework


class BrokerCpu:
    """CPU time the local RabbitMQ node uses from now on (None when it is not local)."""

    def __init__(self) -> None:
        self.pid = local_broker_pid()
        self.start = cpu_seconds(self.pid) if self.pid else 0.0

    def used(self) -> float | None:
        return cpu_seconds(self.pid) - self.start if self.pid else None


class Counter:
    """Counts handled messages; `done` fires at `target`."""

    def __init__(self, target: int = 0) -> None:
        self.target = target
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def __call__(self, _msg: Any) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count == self.target:
            self.done.set()


async def publish(c: Contender, url: str, n: int) -> dict[str, Any]:
    """(A) publish n persistent, confirmed commands."""
    await c.open(url)
    queue = queue_name(c.name, "A")
    try:
        await c.declare(queue)
        orders = [make_order(i) for i in range(n)]
        broker = BrokerCpu()
        t0, cpu0 = time.perf_counter(), time.process_time()
        await c.publish_many(queue, orders)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        broker_cpu = broker.used()
        depth = await queue_depth(url, queue)
        if depth != n:
            raise RuntimeError(f"{queue} holds {depth} messages after publishing {n}")
    finally:
        await delete_queues(url, c.queues(queue))
        await c.close()
    return {
        "rate": n / seconds,
        "seconds": seconds,
        "n": n,
        "cpu_us": cpu / n * 1e6,
        "broker_cpu_us": broker_cpu / n * 1e6 if broker_cpu is not None else None,
    }


async def consume(
    c: Contender, url: str, n: int, timeout: float = 600.0, queue: str = ""
) -> dict[str, Any]:
    """(B) consume a pre-loaded queue of n, ack after the handler validated the body."""
    await c.open(url)
    queue = queue or queue_name(c.name, "B")
    try:
        await c.declare(queue)
        await preload(url, queue, n)
        counter = Counter(n)
        broker = BrokerCpu()
        t0, cpu0 = time.monotonic(), time.process_time()
        await c.start_consumer(queue, counter)
        await asyncio.wait_for(counter.done.wait(), timeout)
        cpu = time.process_time() - cpu0
        broker_cpu = broker.used()
        await c.stop_consumer()
    finally:
        await delete_queues(url, c.queues(queue))
        await c.close()
    span = counter.last - counter.first
    return {
        "rate": (n - 1) / span if span > 0 else float("nan"),
        "seconds": counter.last - t0,
        "n": n,
        "cpu_us": cpu / n * 1e6,  # this process's CPU (all threads) per message
        "broker_cpu_us": broker_cpu / n * 1e6 if broker_cpu is not None else None,
        # ack frames the contender sent, where it counts them (the tuned reference does)
        "ack_frames": getattr(c, "ack_frames", None),
        # spans the contender recorded, where it counts them (framework+otel does)
        "spans": getattr(c, "spans", None),
    }


async def store_overhead(c: Contender, url: str, n: int, store: str) -> dict[str, Any]:
    """(S) workload B for the framework, its Bus using idempotency store `store`."""
    from bench.stores import database_for, server_version, store_for

    if not isinstance(c, Framework):
        raise SystemExit(f"workload S measures the framework's stores, not {c.name}")
    queue = queue_name(c.name, f"S-{store}")
    async with store_for(store, scope=queue) as idempotency, database_for(store) as database:
        c.idempotency = idempotency
        c.database = database
        result = await consume(c, url, n, queue=queue)
    return result | {"store": store, "server": await server_version(store)}


async def latency(c: Contender, url: str, rate: int, seconds: float) -> dict[str, Any]:
    """(C) end-to-end latency (publish call to handler) at a fixed rate."""
    await c.open(url)
    queue = queue_name(c.name, "C")
    total = int(rate * seconds)
    samples: list[float] = []
    done = asyncio.Event()

    def on_message(msg: Any) -> None:
        samples.append(time.perf_counter() - msg.sent)
        if len(samples) == total:
            done.set()

    try:
        await c.declare(queue)
        await c.start_consumer(queue, on_message)
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(int((time.perf_counter() - t0) * rate) + 1, total)
            while sent < due:
                task = asyncio.create_task(
                    c.publish_one(queue, make_order(sent, time.perf_counter()))
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.0005)
        publish_seconds = time.perf_counter() - t0
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await asyncio.wait_for(done.wait(), 60)
        await c.stop_consumer()
    finally:
        await delete_queues(url, c.queues(queue))
        await c.close()
    warm = sorted(samples[len(samples) // 20 :])  # drop the first 5% (warm-up)
    return {
        "p50_ms": percentile(warm, 50) * 1000,
        "p99_ms": percentile(warm, 99) * 1000,
        "max_ms": warm[-1] * 1000,
        "achieved_rate": total / publish_seconds,
        "n": total,
    }


async def worker(c: Contender, url: str, queue: str) -> dict[str, Any]:
    """Consumer process for D and E: READY, wait for GO, report progress, stop on STOP/EOF."""
    await c.open(url)
    print("READY", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "GO":
        await c.close()
        return {"count": 0}
    counter = Counter()
    await c.start_consumer(queue, counter)
    stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
    reported = -1
    while not stop.done():
        if counter.count != reported:
            reported = counter.count
            print(f"P {counter.count} {counter.first:.6f} {counter.last:.6f}", flush=True)
        await asyncio.wait({stop}, timeout=0.05)
    await c.stop_consumer()
    await c.close()
    return {"count": counter.count, "first": counter.first, "last": counter.last}


async def profile(c: Contender, url: str, n: int, top: int, workload: str = "B") -> dict[str, Any]:
    """Workload A or B under pyinstrument: top entries (self, total), the call tree and the
    share of time per package."""
    from pyinstrument import Profiler

    from bench.profiling import flat_top, share_by_package, tree_text

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    await c.open(url)
    queue = queue_name(c.name, f"profile{workload}")
    counter = Counter(n)
    try:
        await c.declare(queue)
        if workload == "A":
            orders = [make_order(i) for i in range(n)]
            t0 = time.perf_counter()
            profiler.start()
            await c.publish_many(queue, orders)
            profiler.stop()
            rate = n / (time.perf_counter() - t0)
        else:
            await preload(url, queue, n)
            profiler.start()
            await c.start_consumer(queue, counter)
            await asyncio.wait_for(counter.done.wait(), 600)
            profiler.stop()
            await c.stop_consumer()
            span = counter.last - counter.first
            rate = (n - 1) / span if span > 0 else float("nan")
    finally:
        if profiler.is_running:
            profiler.stop()
        await delete_queues(url, c.queues(queue))
        await c.close()
    return {
        "rate": rate,
        "workload": workload,
        "flat": flat_top(profiler, top),
        "tree": tree_text(profiler),
        "shares": share_by_package(profiler),
    }


def run(coro: Coroutine[Any, Any, dict[str, Any]], use_uvloop: bool) -> dict[str, Any]:
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("workload", choices=["A", "B", "C", "S", "worker", "profile"])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--queue", default="")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--profile-workload",
        choices=["A", "B"],
        default="B",
        help="profile: the workload to profile",
    )
    parser.add_argument(
        "--store",
        default="noop",
        help="S: the idempotency store (noop, memory, sqlite, redis, postgres)",
    )
    args = parser.parse_args(argv)
    contender = CONTENDERS[args.contender]()
    url = amqp_url()
    coro: Coroutine[Any, Any, dict[str, Any]]
    match args.workload:
        case "A":
            coro = publish(contender, url, args.n)
        case "B":
            coro = consume(contender, url, args.n)
        case "C":
            coro = latency(contender, url, args.rate, args.seconds)
        case "S":
            coro = store_overhead(contender, url, args.n, args.store)
        case "worker":
            coro = worker(contender, url, args.queue)
        case _:
            coro = profile(contender, url, args.n, args.top, args.profile_workload)
    result = run(coro, contender.uvloop)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
