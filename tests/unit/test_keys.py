"""new_key gives random version-4 UUIDs in their usual text form."""

from __future__ import annotations

import uuid

from framework.wire.keys import new_key


def test_new_keys_are_version_4_uuids_in_canonical_form() -> None:
    keys = [new_key() for _ in range(5000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(key)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == key


def test_every_variant_digit_occurs() -> None:
    """The variant digit is 8, 9, a or b, and all four occur (the two random bits are kept)."""
    digits = {new_key()[19] for _ in range(2000)}
    assert digits == {"8", "9", "a", "b"}
