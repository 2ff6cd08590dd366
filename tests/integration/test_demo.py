"""The README's main job runs end to end against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_places_every_order(amqp_url: str) -> None:
    """`framework demo --orders 100` handles every order and exits 0 with a summary."""
    result = subprocess.run(
        [sys.executable, "-m", "framework", "demo", "--orders", "100", "--timeout", "60"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "AMQP_URL": amqp_url, "FRAMEWORK_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo summary" in result.stderr
    assert "100 │     100" in result.stderr
