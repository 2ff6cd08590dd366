"""`python -m bench`: run every contender through every workload, write bench/RESULTS.md.

Workload S (idempotency store overhead) runs the framework contender only, once per store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import amqp_url, sweep_leftovers
from bench.contenders import CONTENDERS
from bench.procs import rss_drain, scaling
from bench.report import render
from bench.stores import BASELINE_STORE, STORES
from bench.stores import sweep_leftovers as sweep_store_leftovers

HERE = Path(__file__).resolve().parent
WORKLOADS = "ABCDES"
STORE_CONTENDER = "framework"
PROCESS_CONTENDERS = ["aio-pika", "framework"]


@dataclass
class Plan:
    n: int
    reps: int
    backlog: int
    d_reps: int
    rate: int
    seconds: float
    profile_n: int
    workloads: str
    contenders: list[str]
    profile: bool
    quick: bool
    stores: list[str] = field(default_factory=lambda: list(STORES))
    results: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, key: str, contender: str, result: dict[str, Any]) -> None:
        self.results.setdefault(key, {}).setdefault(contender, []).append(result)


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def child(contender: str, workload: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run one measurement in a fresh process; returns its RESULT."""
    cmd = [sys.executable, "-m", "bench.child", contender, workload, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(
        f"{contender} {workload} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    )


def measure(
    plan: Plan, key: str, label: str, workload: str, *args: str, contender: str | None = None
) -> None:
    """One measurement, recorded under `label` (the contender unless `contender` is given);
    a failure (e.g. the shared broker restarted) is retried once."""
    for attempt in (1, 2):
        try:
            result = child(contender or label, workload, *args)
            break
        except Exception as exc:  # noqa: BLE001 - a failed contender is reported and run again
            lines = str(exc).strip().splitlines()
            log(f"{key} {label}: FAILED (attempt {attempt}) {lines[0]} ... {lines[-1]}")
            if attempt == 2:
                plan.errors.append(f"{key} {label}: {lines[0]} ... {lines[-1]}")
                return
            time.sleep(5)
    plan.add(key, label, result)
    shown = {k: round(v, 2) for k, v in result.items() if isinstance(v, float)}
    log(f"{key} {label}: {shown}")


def run_in_process_workloads(plan: Plan) -> None:
    for rep in range(plan.reps):
        log(f"repetition {rep + 1}/{plan.reps}")
        for contender in plan.contenders:
            if "A" in plan.workloads:
                measure(plan, "A", contender, "A", "-n", str(plan.n))
            if "B" in plan.workloads:
                measure(plan, "B", contender, "B", "-n", str(plan.n))
            if "C" in plan.workloads:
                measure(
                    plan,
                    "C",
                    contender,
                    "C",
                    "--rate",
                    str(plan.rate),
                    "--seconds",
                    str(plan.seconds),
                )


def run_store_workload(plan: Plan) -> None:
    """(S) the framework consuming through each store; every store in every repetition, the
    no-op baseline first, so the ratios compare figures of the same run."""
    if STORE_CONTENDER not in plan.contenders:
        log(f"S skipped: it measures the {STORE_CONTENDER} contender, not selected")
        return
    left = asyncio.run(sweep_store_leftovers())
    if left:
        log(f"deleted {left} idempotency key(s) an earlier, killed S run left behind")
    for rep in range(plan.reps):
        log(f"S repetition {rep + 1}/{plan.reps}")
        for store in plan.stores:
            measure(
                plan,
                "S",
                store,
                "S",
                "-n",
                str(plan.n),
                "--store",
                store,
                contender=STORE_CONTENDER,
            )


async def run_process_workloads(plan: Plan) -> None:
    url = amqp_url()
    contenders = [c for c in PROCESS_CONTENDERS if c in plan.contenders]
    for rep in range(max(plan.reps, plan.d_reps)):
        for contender in contenders:
            if "D" in plan.workloads and rep < plan.d_reps:
                await _guarded(plan, "D", contender, rss_drain(url, contender, plan.backlog))
            if "E" in plan.workloads and rep < plan.reps:
                for processes in (1, 2):
                    await _guarded(
                        plan, f"E{processes}", contender, scaling(url, contender, processes, plan.n)
                    )


async def _guarded(plan: Plan, key: str, contender: str, coro: Any) -> None:
    try:
        result = await coro
    except Exception as exc:  # noqa: BLE001 - one contender failing must not stop the others
        plan.errors.append(f"{key} {contender}: {exc}")
        log(f"{key} {contender}: FAILED {exc}")
        return
    plan.add(key, contender, result)
    shown = {k: round(v, 2) for k, v in result.items() if isinstance(v, float)}
    log(f"{key} {contender}: {shown}")


def run_profiles(plan: Plan) -> None:
    """Consume (B) and publish (A) under the profiler, for the framework as `framework run`
    runs it and for the tuned reference: where each spends its time, side by side."""
    for workload in ("B", "A"):
        for contender in ("framework+uvloop", "framework", "tuned raw"):
            if contender not in plan.contenders:
                continue
            if contender == "framework" and "framework+uvloop" in plan.contenders:
                continue  # one framework profile per workload: the uvloop one
            log(f"profiling workload {workload} for {contender}")
            try:
                plan.profiles[f"{contender}|{workload}"] = child(
                    contender, "profile", "-n", str(plan.profile_n), "--profile-workload", workload
                )
            except Exception as exc:  # noqa: BLE001 - a failed profile is reported; the run goes on
                plan.errors.append(f"profile {contender} {workload}: {exc}")


def parse(argv: list[str] | None) -> tuple[Plan, Path, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small N, one repetition: proves the bench works (CI smoke)",
    )
    parser.add_argument("-n", type=int, help="messages for A, B, E and S (default 20000)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3)")
    parser.add_argument("--backlog", type=int, help="backlog drained in D (default 100000)")
    parser.add_argument("--d-reps", type=int, help="repetitions of D (default 1: ~1 min each)")
    parser.add_argument("--rate", type=int, default=1000, help="msg/s in C")
    parser.add_argument("--seconds", type=float, help="duration of C (default 10)")
    parser.add_argument("--workloads", default=WORKLOADS, help=f"subset of {WORKLOADS}")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of: " + ", ".join(CONTENDERS),
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help="S: comma-separated subset of: "
        + ", ".join(STORES)
        + " (noop, the baseline of the ratios, is always measured)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument run")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    args = parser.parse_args(argv)
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; choose from {list(CONTENDERS)}")
    stores = {s.strip() for s in args.stores.split(",") if s.strip()} | {BASELINE_STORE}
    if stores - set(STORES):
        parser.error(f"unknown store(s) {sorted(stores - set(STORES))}; choose from {STORES}")
    quick = args.quick
    plan = Plan(
        n=args.n or (1000 if quick else 20_000),
        reps=args.reps or (1 if quick else 3),
        backlog=args.backlog or (2000 if quick else 100_000),
        d_reps=args.d_reps or 1,
        rate=args.rate,
        seconds=args.seconds or (2.0 if quick else 10.0),
        profile_n=args.n or (1000 if quick else 20_000),
        workloads=args.workloads.upper(),
        contenders=contenders,
        profile=not args.no_profile,
        quick=quick,
        stores=[s for s in STORES if s in stores],
    )
    return plan, args.output, args.json


def main(argv: list[str] | None = None) -> int:
    plan, output, json_path = parse(argv)
    started = time.time()
    left = sweep_leftovers(amqp_url())
    if left:
        log(f"deleted {len(left)} queue(s) an earlier, killed run left behind")
    log(
        f"N={plan.n} reps={plan.reps} backlog={plan.backlog} workloads={plan.workloads} "
        f"contenders={plan.contenders}"
        + (f" stores={plan.stores}" if "S" in plan.workloads else "")
    )
    run_in_process_workloads(plan)
    if "S" in plan.workloads:
        run_store_workload(plan)
    if any(w in plan.workloads for w in "DE"):
        asyncio.run(run_process_workloads(plan))
    if plan.profile:
        run_profiles(plan)
    elapsed = time.time() - started
    output.write_text(render(plan, elapsed))
    log(f"wrote {output} in {elapsed:.0f}s")
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                {"results": plan.results, "errors": plan.errors, "profiles": plan.profiles},
                indent=1,
            )
        )
    return 1 if plan.errors else 0
