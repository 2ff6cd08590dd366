"""Prometheus's own checks (scripts/promtool): the metrics a running worker exposes pass
`promtool check metrics`, and every query of the Grafana dashboard passes `promtool check
rules` as a recording rule."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from framework import Bus, CircuitBreaker, Context, PermanentError, Worker
from framework.testing import BrokerAdmin, eventually
from framework.testing.pytest_plugin import WorkerFactory
from framework.wire import names
from framework.wire.envelope import encode_body
from tests.integration.cli_runner import REPO
from tests.integration.test_sla_metrics import Order, scraped

PROMTOOL = REPO / "scripts" / "promtool"
DASHBOARD = REPO / "deploy" / "grafana" / "framework-dashboard.json"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run scripts/promtool (it fetches the binary into .tools/ on first use)."""
    return subprocess.run(
        [str(PROMTOOL), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def fetched() -> None:
    """promtool is there (the first call may download it): later calls are quick."""
    result = promtool("--version")
    assert result.returncode == 0, result.stderr


def dashboard_rules() -> dict[str, object]:
    """One recording rule per query of a dashboard panel (Grafana's `$queue` matches all)."""
    dashboard = json.loads(DASHBOARD.read_text())
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}:{target['refId'].lower()}",
            "expr": target["expr"].replace("$queue", ".*"),
        }
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    return {"groups": [{"name": "framework-dashboard", "rules": rules}]}


def check_rules(tmp_path: Path, rules: Mapping[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules, indent=2))  # JSON is YAML
    return promtool("check", "rules", str(path))


@pytest.mark.timeout(150)
def test_dashboard_queries_pass_promtool_check_rules(fetched: None, tmp_path: Path) -> None:
    """Every panel query parses and lints clean as a recording rule."""
    rules = dashboard_rules()
    count = len(rules["groups"][0]["rules"])  # type: ignore[index]
    result = check_rules(tmp_path, rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


def test_promtool_check_rules_refuses_a_broken_query(fetched: None, tmp_path: Path) -> None:
    """The rule check can fail: an unbalanced query is refused."""
    rules = {"groups": [{"name": "g", "rules": [{"record": "r:x", "expr": "sum(rate(x[1m])"}]}]}
    result = check_rules(tmp_path, rules)
    assert result.returncode != 0


def test_promtool_check_metrics_refuses_a_badly_named_counter(fetched: None) -> None:
    """The metrics check can fail: a counter without the _total suffix is a lint problem."""
    text = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs 1\n"
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


async def test_running_worker_metrics_pass_promtool_check_metrics(
    fetched: None,
    bus: Bus,
    worker_factory: WorkerFactory,
    broker_admin: BrokerAdmin,
    queue_name: str,
) -> None:
    """A worker that handled, retried, timed out, dead-lettered, expired and skipped a
    duplicate, behind a breaker, exposes metrics that `promtool check metrics` accepts."""
    breaker = CircuitBreaker("gateway", failure_threshold=100)
    failed_once: set[str] = set()

    class Everything(Worker):
        queue = queue_name
        timeout = 0.3
        max_attempts = 2
        retry_base_delay = 0.05
        breakers = (breaker,)

        async def handle(self, msg: Order, ctx: Context) -> None:
            async with breaker:
                if msg.slow:
                    await asyncio.sleep(30)
                if ctx.message_id == "flaky" and ctx.message_id not in failed_once:
                    failed_once.add(ctx.message_id)
                    raise ConnectionError("flaky")
                if ctx.message_id == "poison":
                    raise PermanentError("poison")

    worker = await worker_factory(Everything)
    async with scraped(worker) as scrape:
        for key in ("ok", "ok", "flaky", "poison"):
            await bus.send(Order(), idempotency_key=key)
        await bus.send(Order(slow=True), idempotency_key="slow")
        await broker_admin.publish_raw(
            queue_name,
            encode_body(Order()),
            type=Order.type_name,
            timestamp=datetime.now(UTC),
            headers={names.DEADLINE: int(time.time() * 1000) - 60_000},
        )
        stats = worker.stats
        await eventually(
            lambda: (
                (stats.handled, stats.duplicates, stats.expired, stats.timeouts) == (2, 1, 1, 2)
            ),
            timeout=20,
        )
        text = await scrape()
    assert re.search(r"^framework_time_in_queue_seconds_bucket\{", text, re.MULTILINE), text
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
