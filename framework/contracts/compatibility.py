"""Is a new version of a message contract safe for its existing producers and consumers?

Pure functions over two JSON Schemas (as pydantic's `model_json_schema()` writes them);
no imports of the contracts themselves, so snapshots on disk can be compared to code.

Compatible: adding an optional field, removing an optional field, changing titles,
descriptions, examples or defaults. Incompatible: removing or renaming a required field,
adding a required field, making a field required or optional, changing a field's type or
constraints. An incompatible change needs a new `type_name` version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

_ANNOTATIONS = frozenset({"title", "description", "examples", "default"})


def incompatibilities(old: Schema, new: Schema) -> list[str]:
    """Every reason `new` cannot replace `old` under the same type name (empty: compatible)."""
    old_props = _properties(old)
    new_props = _properties(new)
    old_required = set(old.get("required", ()))
    new_required = set(new.get("required", ()))
    problems: list[str] = []
    for name in sorted(old_props.keys() - new_props.keys()):
        if name in old_required:
            problems.append(f"required field {name!r} was removed or renamed")
    for name in sorted(new_props.keys() - old_props.keys()):
        if name in new_required:
            problems.append(f"new field {name!r} is required (make it optional with a default)")
    for name in sorted(old_props.keys() & new_props.keys()):
        if (name in old_required) != (name in new_required):
            now = "required" if name in new_required else "optional"
            problems.append(f"field {name!r} became {now}")
        before = normalize(old_props[name], old)
        after = normalize(new_props[name], new)
        if before != after:
            problems.append(f"field {name!r} changed type or constraints: {before} -> {after}")
    return problems


def normalize(schema: Any, root: Schema) -> Any:
    """A property's schema with `$ref`s resolved and documentation-only keys dropped."""
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return normalize(_resolve(ref, root), root)
        return {k: normalize(v, root) for k, v in sorted(schema.items()) if k not in _ANNOTATIONS}
    if isinstance(schema, list):
        return [normalize(item, root) for item in schema]
    return schema


def version_of(type_name: str) -> int | None:
    """The version suffix of a type name (`orders.PlaceOrder.v2` -> 2), None without one."""
    _, _, last = type_name.rpartition(".")
    if last.startswith("v") and last[1:].isdigit():
        return int(last[1:])
    return None


def _properties(schema: Schema) -> dict[str, Any]:
    return dict(schema.get("properties", {}))


def _resolve(ref: str, root: Schema) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node
