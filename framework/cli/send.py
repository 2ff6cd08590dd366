"""`framework send TYPE JSON`: validate against the registered schema, publish, print the key."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from framework.bus import Bus
from framework.cli.context import state
from framework.cli.options import PROJECT_DEFAULT, module_option
from framework.cli.send_many import emit, send_many
from framework.contracts.loading import import_module, import_package_tree
from framework.contracts.project import project_modules
from framework.errors import ConfigurationError
from framework.messages import Command, Message, message_types
from framework.settings import Settings


def resolve_type(name: str, modules: tuple[str, ...]) -> type[Message]:
    """Find the message class called `name` among the project's packages and `modules`."""
    try:
        project = project_modules()
    except ConfigurationError:
        project = ()  # nothing found by default: the modules given must have it
    for package in project:
        try:
            import_package_tree(package)
        except Exception as exc:  # pragma: no cover - a broken package of the user's
            raise click.UsageError(f"cannot import {package}: {exc}") from exc
    for module in modules:
        import_module(module)
    known = message_types()
    if name not in known:
        listing = ", ".join(sorted(known)) or "none found (pass -m MODULE to import yours)"
        raise click.UsageError(f"unknown message type {name!r}; known types: {listing}")
    return known[name]


def parse_body(cls: type[Message], text: str) -> Message:
    """Parse and validate JSON text as `cls`, naming the offending field on error."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise click.UsageError(f"invalid JSON: {exc.msg} at {where}") from exc
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in error["loc"]) or "(body)"
        raise click.UsageError(f"{cls.type_name}: field {field!r}: {error['msg']}") from exc


@click.command("send")
@click.argument("type_name", metavar="TYPE")
@click.argument("body", metavar="JSON", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the JSON body from a file instead (JSON `-`: from stdin).",
)
@click.option(
    "--key",
    default=None,
    help="Idempotency key (default: a fresh one); with --count N: KEY-1 .. KEY-N.",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Send the message N times (load tests), with a progress bar.",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Schedule a command: its queue gets it this many seconds from now (up to 7 days).",
)
@module_option(
    "Extra module to import message types from (repeatable), besides the "
    f"project's ({PROJECT_DEFAULT})."
)
@click.pass_context
def send_command(
    ctx: click.Context,
    type_name: str,
    body: str | None,
    file: Path | None,
    key: str | None,
    count: int,
    delay: float | None,
    modules: tuple[str, ...],
) -> None:
    """Validate JSON against TYPE's schema and publish it; prints the idempotency key.

    JSON `-` reads the body from standard input.
    """
    if (body is None) == (file is None):
        raise click.UsageError(
            "give the JSON body as an argument (- for stdin) or with --file, not both"
        )
    if file is not None:
        text = file.read_text()
    elif body == "-":
        text = sys.stdin.read()
    else:
        text = str(body)
    cls = resolve_type(type_name, modules)
    message = parse_body(cls, text)
    settings = state(ctx).settings
    if delay is not None:
        if not isinstance(message, Command):
            raise click.UsageError(f"--delay schedules commands; {type_name} is an event")
        if count != 1:
            raise click.UsageError("--delay schedules one command: leave out --count")
        click.echo(asyncio.run(_schedule(settings, message, key, delay)))
        return
    if count == 1:
        click.echo(asyncio.run(_publish(settings, message, key)))
        return
    sent = asyncio.run(send_many(settings, message, key, count))
    click.echo(f"sent {len(sent)} x {message.type_name}: keys {sent[0]} .. {sent[-1]}")


async def _publish(settings: Settings, message: Message, key: str | None) -> str:
    async with Bus.connect(settings=settings, service="framework-cli") as bus:
        return await emit(bus, message, key)


async def _schedule(settings: Settings, command: Command, key: str | None, delay: float) -> str:
    async with Bus.connect(settings=settings, service="framework-cli") as bus:
        return await bus.send(command, idempotency_key=key, delay=delay)
