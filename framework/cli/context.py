"""What every subcommand gets: validated settings built from options and environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from pydantic import SecretStr

from framework.ops.logs import configure_logging
from framework.settings import Settings


@dataclass(frozen=True)
class CliState:
    settings: Settings

    @classmethod
    def load(cls, *, url: str | None, log_format: str | None, quiet: bool) -> CliState:
        overrides: dict[str, Any] = {}
        if url is not None:
            overrides["amqp_url"] = SecretStr(url)
        if log_format is not None:
            overrides["log_format"] = log_format
        settings = Settings(**overrides)
        if quiet:  # one-shot commands: failures surface as one `error:` line
            configure_logging(settings.log_format, "warning", library_level="critical")
        else:
            configure_logging(settings.log_format, settings.log_level)
        return cls(settings)


def state(ctx: click.Context) -> CliState:
    """The CliState of the running command."""
    found = ctx.find_object(CliState)
    if found is None:  # pragma: no cover - the group always sets it
        raise click.UsageError("internal: CLI state missing")
    return found
