"""Running `python -m framework` as a subprocess against the test broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEAD_MANAGEMENT = "http://guest:guest@127.0.0.1:1/"


def framework(
    amqp_url: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "AMQP_URL": amqp_url,
            "FRAMEWORK_LOG_LEVEL": "warning",
            "FRAMEWORK_CONNECT_ATTEMPTS": "2",
            **(env or {}),
        },
    )


def framework_json(amqp_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    result = framework(amqp_url, *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
