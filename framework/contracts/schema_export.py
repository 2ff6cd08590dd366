"""Finding the message contracts of a package and exporting their JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from framework.contracts.loading import import_package_tree
from framework.messages import Message, is_command, message_types


def contracts(package: str = "schemas") -> dict[str, type[Message]]:
    """Message classes defined in `package` (imported with its submodules), by type name."""
    import_package_tree(package)
    return {
        name: cls
        for name, cls in sorted(message_types().items())
        if cls.__module__ == package or cls.__module__.startswith(f"{package}.")
    }


def json_schema(cls: type[Message]) -> dict[str, Any]:
    """The contract's JSON Schema, tagged with its type name and kind."""
    schema = cls.model_json_schema()
    schema["x-type-name"] = cls.type_name
    schema["x-kind"] = "command" if is_command(cls) else "event"
    return schema


def write_schemas(classes: dict[str, type[Message]], directory: Path) -> list[Path]:
    """Write one `<type_name>.json` per contract into `directory`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, cls in classes.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(json_schema(cls), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
