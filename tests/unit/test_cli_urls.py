"""Broken broker URLs and insecure TLS on the command line: one `error:` line, no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "pa55word"


def framework(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", "--url", url, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FRAMEWORK_CONNECT_ATTEMPTS": "1",
            "FRAMEWORK_CONNECT_TIMEOUT": "1",
            **env,
        },
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"amqp://u:{SECRET}@127.0.0.1:abc/", "is not a number from 0 to 65535"),
        (f"amqp://u:{SECRET}@127.0.0.1:99999/", "is not a number from 0 to 65535"),
        (f"amqp://u:{SECRET}#1@127.0.0.1:1/", "percent-encode"),
        (f"amqp://u:p@{SECRET}/x@127.0.0.1:1/", "has an '@' after its host part"),
        (f"amqp://u:{SECRET}@[::1/", "cannot parse the broker URL"),
    ],
)
@pytest.mark.parametrize("command", [("queues", "orders"), ("dlq", "list", "orders")])
def test_broken_broker_url_is_one_error_line(
    url: str, fragment: str, command: tuple[str, ...]
) -> None:
    """A non-numeric port, an unencoded reserved character or a broken host: one line that
    says how to write the URL, the password nowhere."""
    result = framework(url, *command)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_tls_without_verification_is_refused() -> None:
    """amqps with no_verify_ssl fails before connecting, saying how to give a CA instead."""
    result = framework(f"amqps://u:{SECRET}@127.0.0.1:1/?no_verify_ssl=1", "queues", "orders")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "no_verify_ssl" in line and "cafile" in line
    assert "FRAMEWORK_ALLOW_INSECURE_TLS" in line and SECRET not in line


def test_tls_without_verification_opted_in_warns() -> None:
    """With FRAMEWORK_ALLOW_INSECURE_TLS it connects (here: to nothing) after a warning."""
    result = framework(
        f"amqps://u:{SECRET}@127.0.0.1:1/?no_verify_ssl=1",
        "queues",
        "orders",
        FRAMEWORK_ALLOW_INSECURE_TLS="true",
    )
    assert result.returncode == 1
    assert "broker.tls_verification_off" in result.stderr
    assert "error: cannot connect to amqps://u:***@127.0.0.1:1/" in result.stderr
    assert SECRET not in result.stderr + result.stdout
