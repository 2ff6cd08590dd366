"""`framework schema [--out DIR]`: the JSON Schemas of the message contracts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from framework.schema_export import contracts, json_schema, write_schemas


@click.command("schema")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one <type_name>.json per contract into this directory.")
@click.option("--package", default="schemas", show_default=True,
              help="Python package holding the contracts.")
def schema_command(out: Path | None, package: str) -> None:
    """Print every contract's JSON Schema (one object keyed by type name), or write files."""
    found = contracts(package)
    if not found:
        raise click.UsageError(f"no Command or Event classes found in package {package!r}")
    if out is None:
        schemas = {name: json_schema(cls) for name, cls in found.items()}
        click.echo(json.dumps(schemas, indent=2, sort_keys=True))
        return
    for path in write_schemas(found, out):
        click.echo(str(path))
