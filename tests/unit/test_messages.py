"""Message type names are stable and overridable; lookup is derived, not registered."""

from __future__ import annotations

from framework import Command, Event
from framework.messages import is_command, message_types
from framework.ops.tracing import child_traceparent, new_traceparent
from framework.wire.keys import derive_key, new_key


class ShipParcel(Command):
    parcel_id: str


class ParcelShipped(Event):
    type_name = "shipping.ParcelShipped.v2"
    parcel_id: str


def test_default_type_name_is_class_name() -> None:
    """Without an override, the class name is the wire type."""
    assert ShipParcel.type_name == "ShipParcel"


def test_type_name_can_be_overridden() -> None:
    """An explicit type_name survives class renames."""
    assert ParcelShipped.type_name == "shipping.ParcelShipped.v2"


def test_message_types_lists_imported_classes() -> None:
    """Lookup by type name walks the class hierarchy."""
    found = message_types()
    assert found["ShipParcel"] is ShipParcel
    assert found["shipping.ParcelShipped.v2"] is ParcelShipped
    assert "Command" not in found and "Event" not in found


def test_kind() -> None:
    """Commands and events are told apart."""
    assert is_command(ShipParcel) and not is_command(ParcelShipped)


def test_derived_keys_are_deterministic_and_distinct() -> None:
    """The same parent, position and type give the same key; anything else differs."""
    assert derive_key("k", 1, "T") == derive_key("k", 1, "T")
    assert (
        len(
            {
                derive_key("k", 1, "T"),
                derive_key("k", 2, "T"),
                derive_key("k", 1, "U"),
                derive_key("j", 1, "T"),
            }
        )
        == 4
    )
    assert new_key() != new_key()


def test_traceparent_child_keeps_trace_id() -> None:
    """A child span continues the parent's trace; garbage starts a new trace."""
    parent = new_traceparent()
    child = child_traceparent(parent)
    assert child.split("-")[1] == parent.split("-")[1]
    assert child.split("-")[2] != parent.split("-")[2]
    assert len(child_traceparent("garbage").split("-")) == 4
