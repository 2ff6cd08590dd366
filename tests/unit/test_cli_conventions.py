"""CLI conventions: --version, help when nothing is asked, -m/--module, stdin, completion."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEAD_URL = "amqp://guest:guest@127.0.0.1:1/"
CLI_TYPES = "tests.unit.cli_types"


def framework(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={
            "PATH": "/usr/bin:/bin",
            "AMQP_URL": DEAD_URL,
            "FRAMEWORK_CONNECT_ATTEMPTS": "1",
            **(env or {}),
        },
    )


def test_version() -> None:
    """`framework --version` prints the installed version and exits 0."""
    result = framework("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"framework {version('framework')}"


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        ((), ("run", "send", "queues", "dlq", "demo")),
        (("dlq",), ("list", "show", "groups", "replay", "purge")),
    ],
)
def test_nothing_asked_prints_the_full_help(
    args: tuple[str, ...], commands: tuple[str, ...]
) -> None:
    """Bare `framework` and `framework dlq` print their whole help on stdout and exit 0."""
    result = framework(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Usage: framework")
    assert all(f"  {command} " in result.stdout for command in commands)


@pytest.mark.parametrize(
    "command",
    [
        ("check", "-m", "tests.fixtures.broken_services"),
        ("check", "--module", "tests.fixtures.broken_services"),
        ("asyncapi", "-m", "tests.fixtures.broken_services"),
        ("schema", "-m", CLI_TYPES),
        ("schema", "--module", CLI_TYPES),
        ("send", "tests.cli.CliOrder", "{oops", "-m", CLI_TYPES),
        ("send", "tests.cli.CliOrder", "{oops", "--module", CLI_TYPES),
    ],
)
def test_module_option_is_spelled_the_same_everywhere(command: tuple[str, ...]) -> None:
    """Every command that imports user code takes -m/--module (and gets past the option)."""
    result = framework(*command)
    assert "No such option" not in result.stderr
    assert ("Traceback" not in result.stderr) and result.returncode in (0, 1, 2)
    if command[0] == "schema":
        assert result.returncode == 0 and "tests.cli.CliOrder" in result.stdout
    if command[0] == "send":
        assert "invalid JSON" in result.stderr  # the type was found in the module given


def test_schema_keeps_its_old_package_option_hidden() -> None:
    """`framework schema --package P` still works (CLI shapes are a contract), unlisted."""
    result = framework("schema", "--package", CLI_TYPES)
    assert result.returncode == 0 and "tests.cli.CliOrder" in result.stdout
    assert "--package" not in framework("schema", "--help").stdout


def test_send_dash_reads_the_body_from_stdin() -> None:
    """`framework send TYPE -` validates what arrives on stdin (here: a missing field)."""
    result = framework(
        "send", "tests.cli.CliOrder", "-", "-m", CLI_TYPES, stdin='{"order_id": "1"}'
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: tests.cli.CliOrder: field 'amount_cents': Field required"
    )


def test_send_dash_with_a_valid_body_gets_to_the_broker() -> None:
    """A valid body from stdin is sent (here the broker is unreachable: that is the error)."""
    result = framework(
        "send",
        "tests.cli.CliOrder",
        "-",
        "-m",
        CLI_TYPES,
        stdin='{"order_id": "1", "amount_cents": 5}',
        env={"FRAMEWORK_CONNECT_TIMEOUT": "1"},
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr


def test_shell_completion_script_and_candidates() -> None:
    """click's completion: `_FRAMEWORK_COMPLETE=bash_source` prints the script, and
    completing `framework dl` offers `dlq`."""
    script = framework(env={"_FRAMEWORK_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_framework_completion" in script.stdout
    words = framework(
        env={
            "_FRAMEWORK_COMPLETE": "bash_complete",
            "COMP_WORDS": "framework dl",
            "COMP_CWORD": "1",
        }
    )
    assert "plain,dlq" in words.stdout.splitlines()
