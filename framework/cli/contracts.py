"""`framework asyncapi` and `framework check`: contracts read from the code."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import yaml

from framework.asyncapi import build_document
from framework.cli.context import state
from framework.contracts import find_problems
from framework.discovery import DEFAULT_MODULES, discover

_MODULE_HELP = f"Package to import (repeatable; default: {' and '.join(DEFAULT_MODULES)})."


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


@click.command("asyncapi")
@click.option("--module", "-m", "modules", multiple=True, metavar="M", help=_MODULE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option("--title", default="framework services", show_default=True,
              help="info.title of the document.")
@click.pass_context
def asyncapi_command(ctx: click.Context, modules: tuple[str, ...], as_json: bool,
                     title: str) -> None:
    """Print an AsyncAPI 3.0 document of the workers and messages in MODULES."""
    url = state(ctx).settings.amqp_urls[0]
    document = build_document(discover(modules), title=title, amqp_url=url)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(yaml.dump(document, Dumper=_NoAliases, sort_keys=False, allow_unicode=True),
                   nl=False)


@click.command("check")
@click.option("--module", "-m", "modules", multiple=True, metavar="M", help=_MODULE_HELP)
def check_command(modules: tuple[str, ...]) -> int:
    """Report contract problems: duplicate or missing handlers, unannotated handlers."""
    catalog = discover(modules)
    problems = find_problems(catalog)
    for problem in problems:
        click.echo(f"{problem.level}: [{problem.code}] {problem.text}")
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    summary = (f"{len(catalog.workers)} workers, {len(catalog.messages)} message types: "
               f"{errors} errors, {warnings} warnings")
    click.echo(summary, file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0
