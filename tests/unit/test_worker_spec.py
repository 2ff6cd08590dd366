"""A Worker subclass is validated when declared: mistakes are errors that say what to do."""

from __future__ import annotations

import pytest

from framework import Command, ConfigurationError, Context, Event, Worker
from framework.consume.worker_spec import build_spec


class Charge(Command):
    type_name = "tests.spec.Charge"


class Charged(Event):
    type_name = "tests.spec.Charged"


def test_misspelled_setting_is_an_error() -> None:
    """`prefech = 10` is caught with a suggestion."""
    with pytest.raises(ConfigurationError, match="did you mean 'prefetch'"):

        class Typo(Worker):
            queue = "q"
            prefech = 10


def test_own_attributes_are_allowed() -> None:
    """Attributes unlike any setting are the user's business."""

    class WithGateway(Worker):
        queue = "q"
        gateway_url = "http://example"

        async def handle(self, msg: Charge, ctx: Context) -> None:
            return None

    assert build_spec(WithGateway).queue == "q"


def test_handled_type_comes_from_annotation() -> None:
    """The consumed type (or union of types) comes from handle's annotation."""

    class Both(Worker):
        queue = "q"

        async def handle(self, msg: Charge | Charged, ctx: Context) -> None:
            return None

    spec = build_spec(Both)
    assert set(spec.message_types) == {"tests.spec.Charge", "tests.spec.Charged"}
    routes = {(b.exchange, b.routing_key) for b in spec.topology.bindings}
    assert routes == {("fw.commands", "tests.spec.Charge"), ("fw.events", "tests.spec.Charged")}


def test_missing_annotation_is_an_error() -> None:
    """A handler without a type annotation cannot be routed."""

    class Untyped(Worker):
        queue = "q"

        async def handle(self, msg, ctx):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(ConfigurationError, match="must annotate msg"):
        build_spec(Untyped)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("prefetch", 0, "positive integer"),
        ("timeout", -1, "positive number"),
        ("timeout", 4000, "consumer_timeout"),
        ("max_attempts", 0, "positive integer"),
        ("retry_max_delay", 0.1, "at most retry_max_delay"),
        ("queue", "", "must set `queue"),
        ("queue", "x.dlq", "clashes"),
        ("max_queue_length", 0, "max_queue_length"),
        ("max_body_bytes", 0, "max_body_bytes must be a positive integer"),
        ("keyless", "hash", "keyless must be one of 'reject', 'content'"),
        ("queue_expires", 0, "queue_expires must be a positive number"),
        ("queue_expires", 60, "queue_expires must be at least 300s"),
        ("idempotency_lease", 0.5, "idempotency_lease must be at least 1s"),
    ],
)
def test_bad_settings_are_rejected(name: str, value: object, fragment: str) -> None:
    """Out-of-range settings fail with a message naming the setting."""

    class Bad(Worker):
        queue = "q"

        async def handle(self, msg: Charge, ctx: Context) -> None:
            return None

    setattr(Bad, name, value)
    with pytest.raises(ConfigurationError, match=fragment):
        build_spec(Bad)


def test_keyless_and_body_limit_settings() -> None:
    """`keyless = "content"` and `max_body_bytes` reach the spec; a misspelling is caught."""

    class ContentKeyed(Worker):
        queue = "q"
        keyless = "content"
        max_body_bytes = 4096

        async def handle(self, msg: Charge, ctx: Context) -> None:
            return None

    spec = build_spec(ContentKeyed)
    assert spec.keyless == "content" and spec.max_body_bytes == 4096
    with pytest.raises(ConfigurationError, match="did you mean 'keyless'"):

        class Typo(Worker):
            queue = "q"
            keyles = "content"


def test_a_lease_shorter_than_the_timeout_is_kept() -> None:
    """A long-running handler may hold a short lease (renewed while it runs): a crashed
    worker's key is free again soon, not after the whole timeout."""

    class Long(Worker):
        queue = "q"
        timeout = 1200.0
        idempotency_lease = 60.0

        async def handle(self, msg: Charge, ctx: Context) -> None:
            return None

    assert build_spec(Long).lease == 60.0
