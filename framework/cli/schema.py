"""`framework schema [--out DIR]`: the JSON Schemas of the message contracts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from framework.cli.options import PROJECT_DEFAULT, module_option
from framework.contracts.project import project_modules
from framework.contracts.schema_export import contracts, json_schema, write_schemas
from framework.messages import Message


@click.command("schema")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one <type_name>.json per contract into this directory.",
)
@module_option(f"Package holding the contracts (repeatable; {PROJECT_DEFAULT}).")
@click.option("--package", "packages", multiple=True, hidden=True)  # the old name of -m
def schema_command(out: Path | None, modules: tuple[str, ...], packages: tuple[str, ...]) -> None:
    """Print every contract's JSON Schema (one object keyed by type name), or write files."""
    chosen = (*modules, *packages) or project_modules()
    found: dict[str, type[Message]] = {}
    for package in chosen:
        found.update(contracts(package))
    if not found:
        raise click.UsageError(f"no Command or Event classes found in {', '.join(chosen)}")
    if out is None:
        schemas = {name: json_schema(cls) for name, cls in found.items()}
        click.echo(json.dumps(schemas, indent=2, sort_keys=True))
        return
    for path in write_schemas(found, out):
        click.echo(str(path))
