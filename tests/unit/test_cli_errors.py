"""User mistakes on the command line give one `error:` line, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEAD_URL = "amqp://admin:pa55word@127.0.0.1:1/"


def framework(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", "--url", DEAD_URL, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FRAMEWORK_CONNECT_ATTEMPTS": "1",
            "FRAMEWORK_CONNECT_TIMEOUT": "1",
        },
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("send", "tests.cli.Nope", "{}", "--module", "tests.unit.cli_types"),
            "unknown message type 'tests.cli.Nope'",
        ),
        (
            ("send", "tests.cli.CliOrder", "{oops", "--module", "tests.unit.cli_types"),
            "invalid JSON",
        ),
        (
            ("send", "tests.cli.CliOrder", '{"order_id": "1"}', "--module", "tests.unit.cli_types"),
            "field 'amount_cents': Field required",
        ),
        (
            (
                "send",
                "tests.cli.CliOrder",
                '{"order_id": "1", "amount_cents": 1}',
                "--module",
                "tests.unit.cli_types",
            ),
            "cannot connect to amqp://admin:***@127.0.0.1:1/",
        ),
        (("run", "no.such.module:Worker"), "cannot import module 'no.such.module'"),
        (("run", "tests.unit.cli_types:CliOrder"), "is not a Worker subclass"),
        (("run", "missing-colon"), "expected MODULE:NAME"),
        (("queues", "orders"), "cannot connect to amqp://admin:***@127.0.0.1:1/"),
        (("dlq", "list", "orders"), "cannot connect to amqp://admin:***@127.0.0.1:1/"),
        (("dlq", "groups", "orders"), "cannot connect to amqp://admin:***@127.0.0.1:1/"),
        (
            ("dlq", "purge", "orders", "--group", "0123456789", "--yes"),
            "cannot connect to amqp://admin:***@127.0.0.1:1/",
        ),
        (("dlq", "replay", "orders", "--limit", "0"), "Invalid value for '--limit'"),
        (("queues", "--json", "--watch", "1"), "--json and --watch do not go together"),
        (
            (
                "send",
                "tests.cli.CliOrder",
                "{}",
                "--count",
                "0",
                "--module",
                "tests.unit.cli_types",
            ),
            "Invalid value for '--count'",
        ),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("send",), "Missing argument 'TYPE'"),
    ],
)
def test_user_mistake_is_one_error_line(args: tuple[str, ...], fragment: str) -> None:
    """Each mistake prints exactly one line `error: ...` naming the problem."""
    result = framework(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr and "pa55word" not in result.stderr + result.stdout


def test_help_exits_zero() -> None:
    """--help is not an error."""
    result = framework("--help")
    assert result.returncode == 0 and "run" in result.stdout and "send" in result.stdout
