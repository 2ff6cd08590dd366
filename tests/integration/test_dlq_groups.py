"""`framework dlq groups`: a worker's dead letters grouped by cause; replay and purge of one
group touch only its messages, and the others stay in the DLQ in their order."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from framework import Bus, Context, PermanentError, Worker
from framework.testing import BrokerAdmin
from framework.wire import names
from tests.integration.dlq_harness import cli, cli_json, idle_queue, wait_until
from tests.integration.ops_service import Job

REFUSED = ["o-17", "o-2048", "o-9"]  # PermanentError naming the order: one group
OUT_OF_STOCK = ["s-1", "s-22", "s-333", "s-4444"]  # LookupError naming the sku: another
INVALID = 2  # bodies without job_id: schema invalid, a third


@dataclass
class FilledDlq:
    """A running worker whose DLQ holds the three kinds of failure."""

    worker: Any
    handled: Counter[str]
    heal: Any  # call to make the refused orders succeed


@pytest.fixture
async def filled(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str
) -> FilledDlq:
    """Nine dead letters in three kinds: 3 refused, 4 out of stock, 2 schema invalid."""
    healed: list[bool] = []
    handled: Counter[str] = Counter()

    class Shop(Worker):
        queue = queue_name
        max_attempts = 1  # an ordinary error is dead-lettered (`exhausted`) at once

        async def handle(self, msg: Job, ctx: Context) -> None:
            if msg.job_id.startswith("o-") and not healed:
                raise PermanentError(f"order {msg.job_id!r} refused: amount {len(msg.job_id)}00")
            if msg.job_id.startswith("s-"):
                raise LookupError(f"sku {msg.job_id[2:]} out of stock")
            handled[msg.job_id] += 1

    worker = await worker_factory(Shop)
    for job_id in [*REFUSED, *OUT_OF_STOCK]:
        await bus.send(Job(job_id=job_id), idempotency_key=f"key-{job_id}")
    for n in range(INVALID):
        await broker_admin.publish_raw(
            queue_name, json.dumps({"n": n}).encode(), type=Job.type_name, message_id=f"bad-{n}"
        )
    total = len(REFUSED) + len(OUT_OF_STOCK) + INVALID
    assert await broker_admin.wait_for_depth(names.dlq_name(queue_name), total) == total
    return FilledDlq(worker, handled, lambda: healed.append(True))


def by_reason(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g["reason"]: g for g in groups}


async def dlq_keys(amqp_url: str, queue: str) -> list[str]:
    return [r["key"] for r in await cli_json(amqp_url, "dlq", "list", queue, "--json")]


async def test_three_kinds_of_failure_are_three_groups(
    amqp_url: str, filled: FilledDlq, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Each group has its count, reason, exception type, masked error and one of its keys;
    the DLQ keeps every message, in its order."""
    before = await dlq_keys(amqp_url, queue_name)
    groups = by_reason(await cli_json(amqp_url, "dlq", "groups", queue_name, "--json"))
    assert {reason: g["count"] for reason, g in groups.items()} == {
        "permanent": 3,
        "exhausted": 4,
        "invalid": 2,
    }
    refused, stock, invalid = groups["permanent"], groups["exhausted"], groups["invalid"]
    assert (refused["exception_type"], refused["error"]) == (
        "PermanentError",
        "order <str> refused: amount <n>",
    )
    assert (stock["exception_type"], stock["error"]) == ("LookupError", "sku <n> out of stock")
    assert invalid["exception_type"] is None and "schema invalid" in invalid["error"]
    assert refused["example_key"] in {f"key-{o}" for o in REFUSED}
    assert invalid["example_key"] in {"bad-0", "bad-1"}
    assert all(g["first_seen"] <= g["last_seen"] for g in groups.values())
    assert len({g["group"] for g in groups.values()}) == 3
    assert await dlq_keys(amqp_url, queue_name) == before


async def test_replaying_one_group_moves_only_its_messages(
    amqp_url: str, filled: FilledDlq, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """The healed worker handles the replayed group; the other six stay, in their order."""
    groups = by_reason(await cli_json(amqp_url, "dlq", "groups", queue_name, "--json"))
    before = await dlq_keys(amqp_url, queue_name)
    filled.heal()
    result = await cli(
        amqp_url, "dlq", "replay", queue_name, "--group", groups["permanent"]["group"]
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 3 messages" in result.stdout
    await wait_until(lambda: sum(filled.handled.values()) == 3)
    assert set(filled.handled) == set(REFUSED)
    assert await dlq_keys(amqp_url, queue_name) == [k for k in before if not k.startswith("key-o")]
    left = by_reason(await cli_json(amqp_url, "dlq", "groups", queue_name, "--json"))
    assert {reason: (g["group"], g["count"]) for reason, g in left.items()} == {
        reason: (groups[reason]["group"], groups[reason]["count"])
        for reason in ("exhausted", "invalid")
    }


async def test_purging_one_group_deletes_only_its_messages(
    amqp_url: str, filled: FilledDlq, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """purge --group deletes the two invalid bodies; the seven others stay in order."""
    groups = by_reason(await cli_json(amqp_url, "dlq", "groups", queue_name, "--json"))
    before = await dlq_keys(amqp_url, queue_name)
    group = groups["invalid"]["group"]
    result = await cli(amqp_url, "dlq", "purge", queue_name, "--group", group, "--yes")
    assert result.returncode == 0, result.stderr
    dlq = names.dlq_name(queue_name)
    assert result.stdout.strip() == f"purged 2 messages from {dlq} (group {group}); 7 left"
    assert await dlq_keys(amqp_url, queue_name) == [k for k in before if not k.startswith("bad-")]
    assert set(by_reason(await cli_json(amqp_url, "dlq", "groups", queue_name, "--json"))) == {
        "permanent",
        "exhausted",
    }


@pytest.mark.parametrize("command", [("replay",), ("purge", "--yes")])
async def test_unknown_group_is_one_error_line(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str, command: tuple[str, ...]
) -> None:
    """A group id the DLQ does not have: one `error:` line naming `dlq groups`, exit 2,
    nothing moved or deleted."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        await broker_admin.publish_raw(dlq, b"{}", headers={names.REASON: "invalid"})
        result = await cli(
            amqp_url, "dlq", command[0], queue_name, "--group", "0" * 10, *command[1:]
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: no failure group '0000000000' in {dlq}: "
            f"`framework dlq groups {queue_name}` lists its groups"
        ]
        assert await broker_admin.depth(dlq) == 1


async def test_browsing_many_leaves_their_order(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """Over 32 messages (where RabbitMQ 3.x requeues a closed channel's gets in any order):
    `dlq groups` and `dlq list` leave them in the order they were in."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        keys = [f"m{n:03d}" for n in range(80)]
        for key in keys:
            await broker_admin.publish_raw(
                dlq, b"{}", message_id=key, headers={names.REASON: "invalid", names.ERROR: key}
            )
        (group,) = await cli_json(amqp_url, "dlq", "groups", queue_name, "--json")
        assert (group["count"], group["example_key"], group["error"]) == (80, "m000", "m<n>")
        assert await dlq_keys(amqp_url, queue_name) == keys
        assert await dlq_keys(amqp_url, queue_name) == keys


async def test_purge_of_many_counted_deletes_them_all(
    amqp_url: str, bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """1,000 counted messages, purged with --yes: all gone, none left behind."""
    async with idle_queue(bus, broker_admin, queue_name) as dlq:
        for n in range(1000):
            await broker_admin.publish_raw(dlq, b"{}", message_id=f"p{n}")
        result = await cli(amqp_url, "dlq", "purge", queue_name, "--yes")
        assert result.stdout.strip() == f"purged 1000 messages from {dlq}; 0 left", result.stderr
        assert await broker_admin.drain(dlq) == []
