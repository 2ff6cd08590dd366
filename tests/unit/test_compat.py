"""The contract compatibility checker: what may change under one type name and what may not."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from framework.contracts.compatibility import incompatibilities, version_of


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


class V1(BaseModel):
    order_id: str
    amount_cents: int = Field(gt=0)
    note: str | None = None


def test_identical_schemas_are_compatible() -> None:
    """Nothing changed: no problems."""
    assert incompatibilities(schema(V1), schema(V1)) == []


def test_adding_an_optional_field_is_compatible() -> None:
    """Old producers omit it, old consumers ignore it."""

    class V1(BaseModel):
        order_id: str
        amount_cents: int = Field(gt=0)
        note: str | None = None
        coupon: str | None = None

    assert incompatibilities(schema(globals()["V1"]), schema(V1)) == []


def test_documentation_and_default_changes_are_compatible() -> None:
    """Titles, descriptions and defaults do not change the wire format."""

    class V1(BaseModel):
        """Docs."""

        order_id: str = Field(description="the order")
        amount_cents: int = Field(gt=0, title="Amount")
        note: str | None = "n/a"

    assert incompatibilities(schema(globals()["V1"]), schema(V1)) == []


def test_removing_a_required_field_is_incompatible() -> None:
    """Old consumers still require it."""

    class V1(BaseModel):
        amount_cents: int = Field(gt=0)
        note: str | None = None

    assert incompatibilities(schema(globals()["V1"]), schema(V1)) == [
        "required field 'order_id' was removed or renamed"
    ]


def test_renaming_a_required_field_is_incompatible() -> None:
    """A rename is a removal plus a new required field."""

    class V1(BaseModel):
        id: str
        amount_cents: int = Field(gt=0)
        note: str | None = None

    problems = incompatibilities(schema(globals()["V1"]), schema(V1))
    assert "required field 'order_id' was removed or renamed" in problems
    assert any("new field 'id' is required" in p for p in problems)


def test_retyping_a_field_is_incompatible() -> None:
    """int -> str breaks both sides."""

    class V1(BaseModel):
        order_id: str
        amount_cents: str
        note: str | None = None

    problems = incompatibilities(schema(globals()["V1"]), schema(V1))
    assert len(problems) == 1 and "'amount_cents' changed type" in problems[0]


def test_tightening_constraints_is_incompatible() -> None:
    """Old producers may send values the new contract rejects."""

    class V1(BaseModel):
        order_id: str
        amount_cents: int = Field(gt=100)
        note: str | None = None

    assert len(incompatibilities(schema(globals()["V1"]), schema(V1))) == 1


def test_optional_becoming_required_is_incompatible() -> None:
    """Old producers omit it; the new consumers would reject their messages."""

    class V1(BaseModel):
        order_id: str
        amount_cents: int = Field(gt=0)
        note: str

    problems = incompatibilities(schema(globals()["V1"]), schema(V1))
    assert "field 'note' became required" in problems


def test_required_becoming_optional_is_incompatible() -> None:
    """New producers may omit it; old consumers would reject their messages."""

    class V1(BaseModel):
        order_id: str | None = None
        amount_cents: int = Field(gt=0)
        note: str | None = None

    problems = incompatibilities(schema(globals()["V1"]), schema(V1))
    assert "field 'order_id' became optional" in problems


def test_nested_models_are_compared_through_refs() -> None:
    """A change inside a referenced model is a change of the field."""

    class Line(BaseModel):
        sku: str

    class Order(BaseModel):
        line: Line

    old = schema(Order)

    class Line2(BaseModel):  # same shape under another name: compatible
        sku: str

    class Order2(BaseModel):
        line: Line2

    assert incompatibilities(old, schema(Order2)) == []

    class Line3(BaseModel):
        sku: int

    class Order3(BaseModel):
        line: Line3

    assert len(incompatibilities(old, schema(Order3))) == 1


def test_version_of_reads_the_suffix() -> None:
    """`x.Y.v2` is version 2; a name without a suffix has none."""
    assert version_of("orders.PlaceOrder.v2") == 2
    assert version_of("orders.PlaceOrder") is None
    assert version_of("vX") is None
