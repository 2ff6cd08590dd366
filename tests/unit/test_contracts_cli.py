"""`framework check` and `framework asyncapi` against the example services and a broken package."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_asyncapi.v3 import AsyncAPI

REPO = Path(__file__).resolve().parents[2]
BROKEN = "tests.fixtures.broken_services"


def framework(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "AMQP_URL": "amqp://u:secret@rabbit.example:5673/"},
    )


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """`framework asyncapi` for the example services, parsed from its YAML output."""
    result = framework("asyncapi")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def test_check_finds_every_problem_in_the_broken_package() -> None:
    """Two handlers, no handler, no subscriber (warning), no annotation: exit 1."""
    result = framework("check", "--module", BROKEN)
    assert result.returncode == 1
    lines = result.stdout.splitlines()

    def line(code: str) -> str:
        [found] = [candidate for candidate in lines if f"[{code}]" in candidate]
        return found

    assert line("duplicate-handler").startswith("error:")
    assert "tests.broken.Charge" in line("duplicate-handler")
    assert "broken.billing" in line("duplicate-handler")
    assert "broken.legacy-billing" in line("duplicate-handler")
    assert line("unhandled-command").startswith("error:")
    assert "tests.broken.Refund" in line("unhandled-command")
    assert line("unsubscribed-event").startswith("warning:")
    assert "tests.broken.Audited" in line("unsubscribed-event")
    assert line("missing-annotation").startswith("error:")
    assert "UntypedWorker" in line("missing-annotation")
    assert "3 errors, 1 warnings" in result.stderr


def test_check_passes_on_the_example_services() -> None:
    """The example services have no errors (OrderPlaced has no subscriber yet: a warning)."""
    result = framework("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[unsubscribed-event] event orders.OrderPlaced.v1" in result.stdout
    assert "0 errors" in result.stdout


def test_check_unknown_module_is_one_error_line() -> None:
    """A module that cannot be imported: one `error:` line, exit 2, no traceback."""
    result = framework("check", "--module", "no_such_package_xyz")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot import module 'no_such_package_xyz'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_asyncapi_has_exchanges_queues_and_dlq(document: dict[str, Any]) -> None:
    """Channels: fw.commands (direct), fw.events (topic), the orders queue and its DLQ."""
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    assert channels["fw.commands"]["bindings"]["amqp"]["exchange"]["type"] == "direct"
    assert channels["fw.events"]["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert set(channels["fw.commands"]["messages"]) >= {
        "orders.PlaceOrder.v1",
        "payments.ChargePayment.v1",
        "customers.RefreshCustomers.v1",
    }
    assert set(channels["fw.events"]["messages"]) >= {
        "orders.OrderPlaced.v1",
        "payments.PaymentSucceeded.v1",
        "payments.PaymentFailed.v1",
        "customers.CustomerUpdated.v1",
    }
    assert not set(channels["fw.commands"]["messages"]) & set(channels["fw.events"]["messages"])
    assert channels["orders"]["bindings"]["amqp"]["queue"]["name"] == "orders"
    assert set(channels["orders"]["messages"]) == {"orders.PlaceOrder.v1"}
    assert "orders.dlq" in channels


def test_asyncapi_operations_say_who_receives_and_sends(document: dict[str, Any]) -> None:
    """OrderWorker receives PlaceOrder on `orders` and sends OrderPlaced to fw.events."""
    operations = document["operations"]
    receive = operations["orders.receive"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/orders"}
    assert receive["messages"] == [{"$ref": "#/channels/orders/messages/orders.PlaceOrder.v1"}]
    assert receive["x-worker"] == "services.orders.worker:OrderWorker"
    send = operations["orders.send.fw.events"]
    assert send["action"] == "send"
    assert send["channel"] == {"$ref": "#/channels/fw.events"}
    assert send["messages"] == [{"$ref": "#/channels/fw.events/messages/orders.OrderPlaced.v1"}]


def test_asyncapi_messages_carry_pydantic_schemas(document: dict[str, Any]) -> None:
    """Each message names its type and points at the model's JSON Schema."""
    message = document["components"]["messages"]["orders.PlaceOrder.v1"]
    assert message["name"] == "orders.PlaceOrder.v1"
    assert message["contentType"] == "application/json"
    schema = resolve(document, message["payload"]["$ref"])
    assert set(schema["required"]) == {"order_id", "customer_id", "amount_cents"}
    assert schema["properties"]["amount_cents"]["exclusiveMinimum"] == 0


def test_asyncapi_refs_resolve_and_operations_use_channel_messages(
    document: dict[str, Any],
) -> None:
    """Every $ref points somewhere; an operation's messages belong to its channel (3.0 rule)."""
    for ref in collect_refs(document):
        resolve(document, ref)
    for operation in document["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/")


def test_asyncapi_validates_with_pydantic_asyncapi(document: dict[str, Any]) -> None:
    """The document parses as an AsyncAPI 3.0 document (pydantic-asyncapi from PyPI).

    pydantic-asyncapi models the AMQP channel binding with `is: exchange`, whereas the AMQP
    binding spec 0.3.0 (which we emit) says `is: routingKey` for an exchange; only that value
    is translated before validating.
    """
    translated = copy.deepcopy(document)
    for channel in translated["channels"].values():
        amqp = channel.get("bindings", {}).get("amqp", {})
        if amqp.get("is") == "routingKey":
            amqp["is"] = "exchange"
    parsed = AsyncAPI.model_validate(translated)
    assert parsed.channels is not None and "orders" in parsed.channels
    assert parsed.operations is not None and "orders.receive" in parsed.operations


def test_asyncapi_json_matches_yaml(document: dict[str, Any]) -> None:
    """--json prints the same document as JSON; the broker password never appears."""
    result = framework("asyncapi", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == document
    assert "secret" not in result.stdout
    assert document["servers"]["rabbitmq"]["host"] == "rabbit.example:5673"


def collect_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in collect_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in collect_refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
