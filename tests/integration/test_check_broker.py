"""`framework check --broker`, and each worker at start, refuse what would break the guarantees
on the broker as it is: a queue with another argument than its worker declares, a policy
lowering the delivery limit or dropping dead letters.

Runs on a vhost the test creates (and deletes), so its policy touches nothing else; needs the
management API (FRAMEWORK_MANAGEMENT_URL).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest

from framework import Bus, Command, ConfigurationError, Context, Worker
from framework.settings import Settings
from tests.integration.cli_runner import framework


def management(method: str, path: str, body: Any = None) -> Any:
    parts = urlsplit(
        os.environ.get("FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
    )
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@contextlib.asynccontextmanager
async def own_vhost(amqp_url: str) -> AsyncIterator[tuple[str, str]]:
    """A vhost of the test's own, writable by the test's user, deleted afterwards:
    (its quoted name for API paths, an AMQP URL on it)."""
    path = quote(f"t.check.{uuid.uuid4().hex[:8]}", safe="")
    await asyncio.to_thread(management, "PUT", f"/api/vhosts/{path}", {})
    try:
        user = urlsplit(amqp_url).username or "guest"
        await asyncio.to_thread(
            management,
            "PUT",
            f"/api/permissions/{path}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        yield path, urlunsplit(urlsplit(amqp_url)._replace(path="/" + path))
    finally:
        await asyncio.to_thread(management, "DELETE", f"/api/vhosts/{path}")


async def put_policy(path: str, name: str, queue: str, definition: dict[str, Any]) -> None:
    """Policy `name` on exactly `queue` of the vhost at `path`."""
    await asyncio.to_thread(
        management,
        "PUT",
        f"/api/policies/{path}/{name}",
        {"pattern": f"^{re.escape(queue)}$", "apply-to": "queues", "definition": definition},
    )


async def policy_shown(path: str, queue: str, name: str) -> None:
    """Until the API shows policy `name` on `queue` (it does with the queue's next stats)."""
    async with asyncio.timeout(60):
        while (  # noqa: ASYNC110 - no event for API refreshes
            await asyncio.to_thread(
                management, "GET", f"/api/queues/{path}/{quote(queue, safe='')}"
            )
        ).get("policy") != name:
            await asyncio.sleep(0.5)


@pytest.mark.timeout(120)  # polls the management API for up to 60 s
async def test_check_broker_refuses_a_conflicting_queue_and_a_lowering_policy(
    amqp_url: str, queue_name: str
) -> None:
    """The worker's queue exists with x-delivery-limit 3 and a policy lowers it to 2: two
    `error:` findings that say which argument and which policy, exit status 1."""
    async with own_vhost(amqp_url) as (path, url):
        await put_policy(path, "low", queue_name, {"delivery-limit": 2})
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(
                queue_name,
                durable=True,
                arguments={"x-queue-type": "quorum", "x-delivery-limit": 3},
            )
        await policy_shown(path, queue_name, "low")
        result = await asyncio.to_thread(
            framework,
            url,
            "check",
            "--broker",
            "-m",
            "tests.integration.ops_service",
            env={"OPS_QUEUE": queue_name, "OPS_TYPE": f"tests.check.{uuid.uuid4().hex[:6]}"},
        )
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert (
        f"error: [queue-arguments] queue {queue_name} exists with x-delivery-limit=3 but "
        "JobWorker declares 10"
    ) in "\n".join(lines)
    assert any(
        line.startswith(
            f"error: [policy-delivery-limit] policy low lowers the "
            f"delivery limit of {queue_name} to 2"
        )
        for line in lines
    ), lines


class Chore(Command):
    type_name = "tests.check.Chore"
    n: int


@pytest.mark.timeout(120)  # polls the management API for up to 60 s
async def test_a_worker_refuses_to_start_where_a_policy_would_move_its_dead_letters(
    amqp_url: str, queue_name: str
) -> None:
    """With FRAMEWORK_MANAGEMENT_URL set, a worker checks its own queues at start: a policy
    giving its DLQ a message TTL (dead letters silently dropped) stops it with one error;
    without the policy the same worker starts."""

    class ChoreWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Chore, ctx: Context) -> None:
            pass

    settings = Settings(
        management_url=os.environ.get(
            "FRAMEWORK_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/"
        )
    )
    async with own_vhost(amqp_url) as (path, url):
        async with Bus.connect(url, settings=settings, service="tests.check") as bus:
            await bus.declare(ChoreWorker)  # no policy yet: checked, and nothing to say
        dlq = f"{queue_name}.dlq"
        await put_policy(path, "drop-dead-letters", dlq, {"message-ttl": 60000})
        await policy_shown(path, dlq, "drop-dead-letters")
        async with Bus.connect(url, settings=settings, service="tests.check") as bus:
            with pytest.raises(ConfigurationError) as raised:
                await asyncio.wait_for(ChoreWorker(bus).run(), 30)
    text = str(raised.value)
    assert "the broker would break ChoreWorker's guarantees: [policy-moves-messages]" in text
    assert f"policy drop-dead-letters sets message-ttl=60000 on {dlq}" in text
