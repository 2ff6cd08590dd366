"""Entry point: a click group whose user mistakes print one `error: ...` line, no traceback.

Shell completion is click's: `eval "$(_FRAMEWORK_COMPLETE=bash_source framework)"` (zsh_source,
fish_source for those shells).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from pydantic import ValidationError

from framework.cli.context import CliState
from framework.cli.contracts import asyncapi_command, check_command
from framework.cli.demo import demo_command
from framework.cli.dlq import dlq_group
from framework.cli.exchanges import declare_exchanges_command
from framework.cli.queues import queues_command
from framework.cli.run import run_command
from framework.cli.schema import schema_command
from framework.cli.send import send_command
from framework.errors import ConfigurationError, FrameworkError
from framework.wire.urls import mask_text

LONG_RUNNING = frozenset({"run", "demo"})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="framework", prog_name="framework", message="%(prog)s %(version)s"
)
@click.option(
    "--url",
    envvar="AMQP_URL",
    default=None,
    metavar="URL",
    help="Broker URL (default: $AMQP_URL or amqp://guest:guest@localhost:5672/).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="Log format (default: $FRAMEWORK_LOG_FORMAT or auto).",
)
@click.pass_context
def cli(ctx: click.Context, url: str | None, log_format: str | None) -> None:
    """framework: message-buffered microservices on RabbitMQ."""
    quiet = ctx.invoked_subcommand not in LONG_RUNNING
    ctx.obj = CliState.load(url=url, log_format=log_format, quiet=quiet)


cli.add_command(run_command)
cli.add_command(send_command)
cli.add_command(demo_command)
cli.add_command(asyncapi_command)
cli.add_command(check_command)
cli.add_command(queues_command)
cli.add_command(dlq_group)
cli.add_command(schema_command)
cli.add_command(declare_exchanges_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (user mistakes: 2, runtime failures: 1)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="framework",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        _error("aborted")
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `framework`, `framework dlq`
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 0
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code or 2
    except ValidationError as exc:
        _error(f"invalid settings: {_first_error(exc)}")
        return 2
    except ConfigurationError as exc:
        _error(str(exc))
        return 2
    except FrameworkError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def _error(text: str) -> None:
    line = " ".join(mask_text(text).split())
    print(f"error: {line}", file=sys.stderr)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    location = ".".join(str(p) for p in error["loc"])
    return f"{location}: {error['msg']}"
