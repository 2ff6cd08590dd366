"""The benchmark still runs: quick mode of workload B for raw aio-pika and the framework, and
of workload S (idempotency store overhead) for every store.

Asserts only that both complete with a positive throughput; speed is judged from
bench/RESULTS.md, never by a timed test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def quick_bench(amqp_url: str, tmp_path: Path, *args: str, timeout: float = 100) -> dict[str, Any]:
    """`python -m bench --quick ARGS` into `tmp_path`: its JSON results (RESULTS.md beside)."""
    raw = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            *args,
            "--output",
            str(tmp_path / "RESULTS.md"),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        env={**os.environ, "AMQP_URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(raw.read_text())
    return results


def test_bench_quick_consume_runs_for_aio_pika_and_framework(amqp_url: str, tmp_path: Path) -> None:
    report = quick_bench(
        amqp_url,
        tmp_path,
        "--workloads",
        "B",
        "--contenders",
        "aio-pika,framework",
        "-n",
        "300",
        "--no-profile",
    )
    results = report["results"]["B"]
    for contender in ("aio-pika", "framework"):
        (run,) = results[contender]
        assert run["n"] == 300
        assert run["rate"] > 0
    assert "## B: consume" in (tmp_path / "RESULTS.md").read_text()


def test_bench_quick_reports_what_tracing_costs(amqp_url: str, tmp_path: Path) -> None:
    """framework+otel records a span per delivery in B; RESULTS.md states its cost over
    framework (tracing off) per message."""
    report = quick_bench(
        amqp_url,
        tmp_path,
        "--workloads",
        "B",
        "--contenders",
        "framework,framework+otel",
        "-n",
        "300",
        "--no-profile",
    )
    results = report["results"]["B"]
    assert results["framework"][0]["spans"] is None
    assert results["framework+otel"][0]["spans"] == 300  # one process span per delivery
    assert "Tracing on (framework+otel" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.timeout(90)  # ~10 s alone; more under load
def test_bench_quick_store_overhead_runs_for_every_store(amqp_url: str, tmp_path: Path) -> None:
    """Workload S: the framework worker completes through the no-op store and every real one."""
    from bench.stores import STORES

    report = quick_bench(
        amqp_url, tmp_path, "--workloads", "S", "-n", "200", "--no-profile", timeout=120
    )
    results = report["results"]["S"]
    assert sorted(results) == sorted(STORES)
    for store in STORES:
        (run,) = results[store]
        assert run["n"] == 200
        assert run["rate"] > 0
    assert "## S: idempotency store overhead" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.timeout(60)  # ~5 s alone; more under load
def test_bench_quick_profiles_say_where_the_time_goes(amqp_url: str, tmp_path: Path) -> None:
    """Workloads A and B under the profiler for the framework and the tuned reference: the
    results file gets each profile and the table of time per package."""
    report = quick_bench(
        amqp_url,
        tmp_path,
        "--workloads",
        "A",
        "--contenders",
        "tuned raw,framework",
        "-n",
        "300",
        timeout=120,
    )
    profiles = report["profiles"]
    assert sorted(profiles) == ["framework|A", "framework|B", "tuned raw|A", "tuned raw|B"]
    for key, prof in profiles.items():
        assert prof["rate"] > 0
        shares = prof["shares"]
        assert abs(sum(shares.values()) - 1.0) < 1e-6, key
        assert shares.get("aiormq", 0) > 0, key
    assert profiles["framework|B"]["shares"].get("framework", 0) > 0
    assert "tuned raw" not in "".join(profiles["tuned raw|A"]["shares"])  # packages, not names
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| package | framework, workload B |" in text
    assert "### tuned raw, workload A" in text


def test_tuned_reference_acks_with_far_fewer_frames_than_messages(
    amqp_url: str, tmp_path: Path
) -> None:
    """The tuned raw reference is the strongest raw consumer: it coalesces acks into far
    fewer `basic.ack(multiple=True)` frames than messages (each frame is a Raft command on a
    quorum queue), so a reference that acks per tick or per message fails here."""
    n = 3000
    report = quick_bench(
        amqp_url,
        tmp_path,
        "--workloads",
        "B",
        "--contenders",
        "tuned raw",
        "-n",
        str(n),
        "--no-profile",
    )
    (run,) = report["results"]["B"]["tuned raw"]
    assert run["n"] == n
    assert 1 <= run["ack_frames"] <= n // 25, run
