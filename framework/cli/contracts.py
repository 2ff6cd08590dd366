"""`framework asyncapi` and `framework check`: contracts read from the code."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import click
import yaml

from framework.cli.broker import BrokerSession
from framework.cli.context import state
from framework.cli.options import PROJECT_DEFAULT, module_option
from framework.consume.broker_checks import version_problems
from framework.consume.startup_checks import worker_queue_problems
from framework.consume.worker_spec import build_spec
from framework.contracts.asyncapi import build_document
from framework.contracts.discovery import discover
from framework.contracts.problems import Problem, find_problems
from framework.ops.management import ManagementUnavailable
from framework.settings import Settings
from framework.worker import Worker

_MODULE_HELP = f"Package to import (repeatable; {PROJECT_DEFAULT})."


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


@click.command("asyncapi")
@module_option(_MODULE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option(
    "--title", default="framework services", show_default=True, help="info.title of the document."
)
@click.pass_context
def asyncapi_command(
    ctx: click.Context, modules: tuple[str, ...], as_json: bool, title: str
) -> None:
    """Print an AsyncAPI 3.0 document of the workers and messages in MODULES."""
    url = state(ctx).settings.amqp_urls[0]
    document = build_document(discover(modules), title=title, amqp_url=url)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(
            yaml.dump(document, Dumper=_NoAliases, sort_keys=False, allow_unicode=True), nl=False
        )


@click.command("check")
@module_option(_MODULE_HELP)
@click.option(
    "--broker",
    "on_broker",
    is_flag=True,
    help="Also check the broker: its version, and each worker queue's arguments "
    "and policies as they exist there (management API).",
)
@click.pass_context
def check_command(ctx: click.Context, modules: tuple[str, ...], on_broker: bool) -> int:
    """Report contract problems: duplicate or missing handlers, unannotated handlers; with
    --broker, what on the broker would break the framework's guarantees."""
    catalog = discover(modules)
    problems = find_problems(catalog)
    if on_broker:
        problems += asyncio.run(broker_problems(state(ctx).settings, catalog.workers))
    for problem in problems:
        click.echo(f"{problem.level}: [{problem.code}] {problem.text}")
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    summary = (
        f"{len(catalog.workers)} workers, {len(catalog.messages)} message types: "
        f"{errors} errors, {warnings} warnings"
    )
    click.echo(summary, file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0


async def broker_problems(settings: Settings, workers: Sequence[type[Worker]]) -> list[Problem]:
    """The broker's version, and every queue of `workers` as it exists there."""
    async with BrokerSession(settings) as session:
        problems = version_problems((await session.connection()).server_version)
        try:
            for worker in workers:
                problems += await worker_queue_problems(
                    session.management,
                    build_spec(worker),
                    worker.__name__,
                    settings.idempotency_timeout,
                )
        except ManagementUnavailable as exc:
            problems.append(
                Problem(
                    "warning",
                    "broker-unreadable",
                    f"queue arguments and policies not checked: {exc}",
                )
            )
    return sorted(problems, key=lambda p: p.level != "error")
