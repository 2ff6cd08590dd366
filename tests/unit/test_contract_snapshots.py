"""The committed JSON Schemas in schemas/snapshots/ guard the wire contracts.

Changing a contract incompatibly under the same type name fails here; bump the version in
`type_name` (e.g. `.v2`, keeping the old class while producers or consumers still use it)
and record it with `framework schema --out schemas/snapshots`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.contracts.compatibility import incompatibilities, version_of
from framework.contracts.schema_export import contracts, json_schema

SNAPSHOTS = Path(__file__).resolve().parents[2] / "schemas" / "snapshots"
CURRENT = contracts("schemas")
RECORD = "record it with `framework schema --out schemas/snapshots`"


def test_every_contract_has_a_versioned_type_name() -> None:
    """type_name ends in .vN so an incompatible change can get a new name."""
    unversioned = [name for name in CURRENT if version_of(name) is None]
    assert unversioned == []


@pytest.mark.parametrize("type_name", sorted(CURRENT))
def test_contract_is_compatible_with_its_snapshot(type_name: str) -> None:
    """The contract in code can replace the committed one under the same type name."""
    path = SNAPSHOTS / f"{type_name}.json"
    assert path.exists(), f"no snapshot for {type_name}: {RECORD}"
    committed = json.loads(path.read_text())
    problems = incompatibilities(committed, json_schema(CURRENT[type_name]))
    assert problems == [], (
        f"{type_name} changed incompatibly: {problems}; give it a new version in type_name"
    )


def test_every_snapshot_still_has_a_contract() -> None:
    """A snapshot without a class means a contract vanished under its consumers' feet."""
    orphans = sorted(p.stem for p in SNAPSHOTS.glob("*.json") if p.stem not in CURRENT)
    assert orphans == [], "contracts removed; delete their snapshots once nothing uses them"
