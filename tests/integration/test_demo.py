"""The README's main job runs end to end against the real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_accounts_for_every_order(amqp_url: str) -> None:
    """`framework demo --orders 100`: every order paid, declined or dead-lettered with a
    reason, some gateway failures retried, exit 0 with a summary."""
    result = subprocess.run(
        [sys.executable, "-m", "framework", "demo", "--orders", "100", "--timeout", "60"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AMQP_URL": amqp_url, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo summary" in result.stderr
    assert "every order accounted for: 100/100" in result.stderr
    assert re.search(r"accounted for\s+│\s+100/100", result.stderr)
    retries = re.search(r"retries \(all services\)\s+│\s+(\d+)", result.stderr)
    assert retries and int(retries.group(1)) > 0, "the flaky gateway must cause retries"
    paid, declined, dead, receipts = (
        _figure(result.stderr, label)
        for label in ("paid", r"failed \(declined\)", "dead-lettered", "receipts sent")
    )
    assert paid + declined + dead == 100, result.stderr[-3000:]
    assert receipts == paid + declined, result.stderr[-3000:]  # one receipt per outcome


def _figure(summary: str, label: str) -> int:
    found = re.search(rf"{label}\s+│\s+(\d+)", summary)
    assert found, f"{label!r} missing from the summary"
    return int(found.group(1))
