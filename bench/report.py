"""Rendering bench/RESULTS.md from one run's measurements."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiormq

from bench.common import PREFETCH, PUBLISH_WINDOW, QUEUE_ARGS, amqp_url, summarize
from bench.contenders import BASELINE, CONTENDERS
from bench.stores import BASELINE_STORE, describe

if TYPE_CHECKING:
    from bench.cli import Plan

TUNED = "tuned raw"
PACKAGES = [
    "framework",
    "aio-pika",
    "aiormq",
    "pamqp",
    "pydantic",
    "pydantic-core",
    "structlog",
    "uvloop",
    "faststream",
    "pyinstrument",
    "redis",
    "asyncpg",
]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _rabbitmq_version() -> str:
    async def ask() -> str:
        conn = await aiormq.connect(amqp_url())
        try:
            props = conn.server_properties or {}
            return str(props.get("version", "?"))
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except Exception as exc:  # noqa: BLE001 - the report still renders without it
        return f"unknown ({type(exc).__name__})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(__file__),
        )
        return out.stdout.strip()
    except Exception:  # noqa: BLE001 - the report still renders without the revision
        return "unknown"


def _values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in runs if r.get(key) is not None]


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _cell(values: list[float], digits: int = 0) -> str:
    if not values:
        return "–"
    s = summarize(values)
    if len(values) == 1:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"


def _median(plan: Plan, key: str, contender: str, field: str) -> float | None:
    values = _values(plan.results.get(key, {}).get(contender, []), field)
    return summarize(values)["median"] if values else None


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def _throughput_table(plan: Plan, key: str) -> list[str]:
    lines = [
        f"| contender | msg/s: median (min–max) | × {BASELINE} | × {TUNED} "
        "| client CPU µs/msg | broker CPU µs/msg |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = _median(plan, key, BASELINE, "rate")
    tuned = _median(plan, key, TUNED, "rate")
    for name in plan.contenders:
        runs = plan.results.get(key, {}).get(name, [])
        med = _median(plan, key, name, "rate")
        lines.append(
            f"| {name} | {_cell(_values(runs, 'rate'))} | {_ratio(med, base)} | "
            f"{_ratio(med, tuned)} | {_cell(_values(runs, 'cpu_us'), 1)} | "
            f"{_cell(_values(runs, 'broker_cpu_us'), 1)} |"
        )
    return lines


def _ack_frames_line(plan: Plan) -> list[str]:
    """How many ack frames the tuned reference sent per 1000 consumed messages in B."""
    runs = plan.results.get("B", {}).get(TUNED, [])
    frames = [r["ack_frames"] * 1000 / r["n"] for r in runs if r.get("ack_frames")]
    if not frames:
        return []
    return [
        f"The {TUNED} reference sent {summarize(frames)['median']:.1f} ack frames per 1000 "
        "messages (median): each `basic.ack(multiple=True)` is one Raft command on the "
        "quorum queue, so the fewer, the less the broker works per message.",
        "",
    ]


def _tracing_line(plan: Plan, key: str) -> list[str]:
    """What OpenTelemetry spans cost per message: framework+otel against framework."""
    traced, plain = "framework+otel", "framework"
    cpu = _median(plan, key, traced, "cpu_us"), _median(plan, key, plain, "cpu_us")
    if cpu[0] is None or cpu[1] is None:
        return []
    rate = _median(plan, key, traced, "rate"), _median(plan, key, plain, "rate")
    return [
        f"Tracing on ({traced}: spans recorded and batched by the OpenTelemetry SDK) costs "
        f"{cpu[0] - cpu[1]:+.1f} µs of client CPU per message over {plain} (API installed, "
        f"no SDK: tracing off); its rate is {_ratio(*rate)} of {plain}'s.",
        "",
    ]


def _latency_table(plan: Plan) -> list[str]:
    lines = [
        "| contender | p50 ms | p99 ms | max ms | achieved msg/s | p99 × aio-pika |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = _median(plan, "C", BASELINE, "p99_ms")
    for name in plan.contenders:
        runs = plan.results.get("C", {}).get(name, [])
        lines.append(
            f"| {name} | {_cell(_values(runs, 'p50_ms'), 2)} | {_cell(_values(runs, 'p99_ms'), 2)}"
            f" | {_cell(_values(runs, 'max_ms'), 1)} | {_cell(_values(runs, 'achieved_rate'))} | "
            f"{_ratio(_median(plan, 'C', name, 'p99_ms'), base)} |"
        )
    return lines


def _rss_table(plan: Plan) -> list[str]:
    lines = [
        "| contender | start MiB | peak MiB | end MiB | growth start→end | growth start→peak "
        "| drain msg/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in plan.results.get("D", {}).items():
        lines.append(
            f"| {name} | {_cell(_values(runs, 'start_mib'), 1)} | "
            f"{_cell(_values(runs, 'peak_mib'), 1)} | {_cell(_values(runs, 'end_mib'), 1)} | "
            f"{_cell(_values(runs, 'growth_pct'), 1)} % | "
            f"{_cell(_values(runs, 'peak_growth_pct'), 1)} % | {_cell(_values(runs, 'rate'))} |"
        )
    return lines


def _scaling_table(plan: Plan) -> list[str]:
    lines = [
        "| contender | 1 process msg/s | 2 processes msg/s | 2 ÷ 1 "
        "| CPU busy, 1 process | CPU busy, 2 processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in plan.results.get("E1", {}):
        one = plan.results.get("E1", {}).get(name, [])
        two = plan.results.get("E2", {}).get(name, [])
        lines.append(
            f"| {name} | {_cell(_values(one, 'rate'))} | {_cell(_values(two, 'rate'))} | "
            f"{_ratio(_median(plan, 'E2', name, 'rate'), _median(plan, 'E1', name, 'rate'))} | "
            f"{_cell(_values(one, 'busy_cores'), 2)} | {_cell(_values(two, 'busy_cores'), 2)} |"
        )
    return lines


def _store_table(plan: Plan) -> list[str]:
    lines = [
        f"| store | msg/s: median (min–max) | × {BASELINE_STORE} | added µs/msg | what |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    results = plan.results.get("S", {})
    base = _median(plan, "S", BASELINE_STORE, "rate")
    for store in plan.stores:
        runs = results.get(store, [])
        med = _median(plan, "S", store, "rate")
        added = (
            "–"
            if med is None or base is None or not med or not base
            else f"{(1 / med - 1 / base) * 1e6:,.0f}"
        )
        servers = {str(r["server"]) for r in runs if r.get("server")}
        what = describe(store) + "".join(f"; {v}" for v in sorted(servers))
        lines.append(
            f"| {store} | {_cell(_values(runs, 'rate'))} | {_ratio(med, base)} | {added} | {what} |"
        )
    return lines


def _check(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**not met**")


def _targets(plan: Plan) -> list[str]:
    def rate(key: str, name: str, field: str = "rate") -> float | None:
        return _median(plan, key, name, field)

    rows: list[tuple[str, str, bool | None]] = []
    for fw in ("framework", "framework+uvloop"):
        for key, what in (("B", "consume"), ("A", "publish")):
            f, t = rate(key, fw), rate(key, TUNED)
            r = None if f is None or t is None else f / t
            rows.append(
                (
                    f"{fw} {what} ≥ 0.8× tuned raw",
                    "–" if r is None else f"{r:.2f}×",
                    None if r is None else r >= 0.8,
                )
            )
        f, b = rate("B", fw), rate("B", BASELINE)
        r = None if f is None or b is None else f / b
        rows.append(
            (
                f"{fw} consume > 2× aio-pika",
                "–" if r is None else f"{r:.2f}×",
                None if r is None else r > 2,
            )
        )
        f, s = rate("B", fw), rate("B", "faststream")
        r = None if f is None or s is None else f / s
        rows.append(
            (
                f"{fw} consume ≥ 3× faststream",
                "–" if r is None else f"{r:.2f}×",
                None if r is None else r >= 3,
            )
        )
        p99 = rate("C", fw, "p99_ms")
        rows.append(
            (
                f"{fw} p99 ≤ 5 ms at {plan.rate} msg/s",
                "–" if p99 is None else f"{p99:.2f} ms",
                None if p99 is None else p99 <= 5,
            )
        )
    growth = rate("D", "framework", "growth_pct")
    rows.append(
        (
            "framework RSS growth ≤ 10 % while the backlog drains",
            "–" if growth is None else f"{growth:.1f} %",
            None if growth is None else growth <= 10,
        )
    )
    one, two = rate("E1", "framework"), rate("E2", "framework")
    r = None if one is None or two is None else two / one
    rows.append(
        (
            "framework 2 processes ≥ 1.6× one",
            "–" if r is None else f"{r:.2f}×",
            None if r is None else r >= 1.6,
        )
    )
    lines = ["| target (issue 6) | measured | status |", "| --- | ---: | --- |"]
    lines += [f"| {what} | {value} | {_check(ok)} |" for what, value, ok in rows]
    # Context: the issue derives "> 2x aio-pika" and ">= 3x faststream" from a tuned raw
    # client that consumes ~3x faster than aio-pika; what the reference itself does here:
    context = []
    for peer in (BASELINE, "faststream"):
        t, p = rate("B", TUNED), rate("B", peer)
        if t is not None and p is not None:
            context.append(f"{t / p:.2f}× {peer}")
    if context:
        lines += [
            "",
            "The issue derives the *× aio-pika* and *× faststream* targets from a "
            "tuned raw client that consumes about 3× faster than plain aio-pika. In this "
            f"run the tuned raw reference itself consumes {' and '.join(context)}, "
            "which is also what a framework exactly as fast as the reference would "
            "measure.",
        ]
    return lines


def _profile_section(plan: Plan) -> list[str]:
    lines = _share_table(plan)
    for key, prof in plan.profiles.items():
        name, _, workload = key.partition("|")
        lines += [
            f"### {name}, workload {workload or 'B'} (N={plan.profile_n}), "
            f"{prof.get('rate', 0):,.0f} msg/s under the profiler",
            "",
            "Top functions by **self** time (pyinstrument, 0.5 ms sampling, "
            "whole main thread incl. the event loop):",
            "",
            "```",
            prof["flat"]["self"],
            "```",
            "",
            "Top functions by **total** (inclusive) time:",
            "",
            "```",
            prof["flat"]["total"],
            "```",
            "",
        ]
        if name.startswith("framework"):
            lines += ["Call tree (start):", "", "```", prof["tree"], "```", ""]
    return lines


def _share_table(plan: Plan) -> list[str]:
    """Self time per package for every profile: where the remaining cost is."""
    profiles = {k: p["shares"] for k, p in plan.profiles.items() if p.get("shares")}
    if not profiles:
        return []
    packages = sorted(
        {pkg for shares in profiles.values() for pkg in shares},
        key=lambda pkg: -max(s.get(pkg, 0.0) for s in profiles.values()),
    )
    heads = [k.replace("|", ", workload ") for k in profiles]
    lines = [
        "Share of each profile's time by package (self time of the frames in that package; "
        "the profiler itself slows Python code, so compare shares, not rates):",
        "",
        "| package | " + " | ".join(heads) + " |",
        "| --- | " + " | ".join("---:" for _ in heads) + " |",
    ]
    for pkg in packages:
        cells = [f"{shares.get(pkg, 0.0) * 100:.1f} %" for shares in profiles.values()]
        lines.append(f"| {pkg} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render(plan: Plan, elapsed: float) -> str:
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    mode = "quick (smoke, not a measurement)" if plan.quick else "full"
    out = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`python -m bench {' '.join(sys.argv[1:])}`) on {now}, "
        f"mode: {mode}, took {elapsed / 60:.1f} min, at commit {_git_commit()}. "
        "Do not edit by hand: re-run the bench.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {_cpu_model()}, **{os.cpu_count()} cores** (broker, clients and this "
        "harness share them)",
        f"- load average at the end of the run: {_loadavg()} (other processes on this "
        "machine or broker skew every figure; compare ratios from one run, not across runs)",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- RabbitMQ {_rabbitmq_version()} (local, AMQP_URL)",
        "- " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
        "",
        "## Setup",
        "",
        f"- every queue is a durable **quorum** queue `{dict(QUEUE_ARGS)}` (the framework "
        "declares its own with the same type plus DLX/retry companions), unique name "
        "`bench.<contender>.<workload>.<uuid>`, deleted afterwards",
        f"- every publish is persistent and confirmed; every message is acked only after its "
        f"handler validated the ~200-byte JSON body into a pydantic model; prefetch {PREFETCH}",
        f"- N = {plan.n:,} (A, B, E, S), {plan.reps} repetition(s) (D: {plan.d_reps}, backlog "
        f"{plan.backlog:,}); C runs {plan.seconds:g} s at {plan.rate} msg/s; "
        "each figure is median (min–max) over the repetitions, each measured in a fresh process",
        "- contenders run interleaved within each repetition, so drift hits all alike",
        "- ratios are of medians measured in this same run",
        "",
        "Contenders:",
        "",
    ]
    out += [f"- **{c}**: {CONTENDERS[c].description}" for c in plan.contenders]
    out += [
        "",
        "## Targets",
        "",
        *_targets(plan),
        "",
        "## A: publish N persistent confirmed commands",
        "",
        f"Time from the first publish to the last confirm (publish window {PUBLISH_WINDOW}). "
        "*Client CPU* is the publishing process's CPU time per message (user + system, all "
        "threads): the cost the contender itself adds, less noisy than the rate on a shared "
        "machine. *Broker CPU* is the local RabbitMQ node's CPU time per message over the same "
        "span: client and broker share this machine's cores.",
        "",
        *_throughput_table(plan, "A"),
        "",
        *_tracing_line(plan, "A"),
        "## B: consume a pre-loaded queue of N, ack after the handler",
        "",
        "Rate between the first and the last handled message; *client CPU* is the consuming "
        "process's CPU time per message.",
        "",
        *_throughput_table(plan, "B"),
        "",
        *_ack_frames_line(plan),
        *_tracing_line(plan, "B"),
        f"## C: end-to-end latency at {plan.rate} msg/s for {plan.seconds:g} s",
        "",
        "From the publish call to the handler, publisher and consumer in one process "
        "(the first 5 % dropped as warm-up).",
        "",
        *_latency_table(plan),
        "",
        f"## D: worker RSS while a {plan.backlog:,}-message backlog drains",
        "",
        "The worker runs in its own process (connected, not yet consuming, at *start*); its "
        "VmRSS is sampled from /proc every 50 ms; *end* is when the last message was handled.",
        "",
        *_rss_table(plan),
        "",
        "## E: 1 vs 2 worker processes on one queue",
        "",
        f"N = {plan.n:,} pre-loaded; rate from the first message handled by any process to the "
        "last (as in B: start-up, from GO to the first message, is not counted). *CPU busy* is "
        "the CPU time the worker processes and the local broker used over the run, in cores "
        f"(this machine has {os.cpu_count()}): when it reaches the core count, the machine, "
        "not the worker, is what stops a second process from doubling the rate.",
        "",
        *_scaling_table(plan),
        "",
        "## S: idempotency store overhead",
        "",
        "Workload B for the **framework** contender (its real Worker, asyncio loop), its Bus "
        "opening each idempotency store in turn; the worker claims every message's key before "
        "the handler and marks it done before the ack. The baseline is a no-op store (always "
        "CLAIMED, stores nothing), measured in the same repetitions; *× noop* is the ratio of "
        "medians, *added µs/msg* = 1/rate − 1/rate(noop). Every key is new (no duplicates). "
        "Keys/rows the run wrote are deleted afterwards (scope: the unique queue name). "
        "The `outbox-*` rows are the worker with a `database` (framework.outbox, keys in "
        "memory://): per message an inbox lookup, one transaction (inbox row, one business "
        "row, one outbox row), then the event published with a confirm and marked sent in "
        "batches; SQLite runs one transaction at a time (one writer), each holding the write "
        "lock for three trips to the database thread, PostgreSQL up to 10 at once (the pool), "
        "five round trips each plus the commit's flush.",
        "",
        *_store_table(plan),
        "",
        "## Profile",
        "",
        "How to reproduce: see bench/README.md (`python -m bench.child framework profile`).",
        "",
        *_profile_section(plan),
    ]
    if plan.errors:
        out += ["## Errors", "", *[f"- {e.splitlines()[0]}" for e in plan.errors], ""]
    return "\n".join(out).rstrip() + "\n"
