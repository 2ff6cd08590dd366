"""Scheduled sends with the least privilege of deploy/rabbitmq/definitions.json: a service
user may publish into the countdown's entry (fw.schedule.0) but not declare it; the
administrator's `framework declare-exchanges --schedule` does, once per vhost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framework import Bus, Command, Context, Worker
from framework.errors import ConfigurationError
from tests.integration.cli_runner import framework
from tests.integration.vhost_admin import Permissions, VhostAdmin, url_for

DEFINITIONS = json.loads(
    (Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json").read_text()
)
SERVICE = "orders"
[ORDERS] = [
    Permissions(p["configure"], p["write"], p["read"])
    for p in DEFINITIONS["permissions"]
    if p["user"] == SERVICE
]


class Chase(Command):
    type_name = "tests.schedule.privilege.Chase"
    n: int


@dataclass(frozen=True)
class Vhost:
    admin_url: str
    service_url: str


@pytest.fixture
def vhost(amqp_url: str) -> Iterator[Vhost]:
    """A fresh vhost with an admin (every right) and the orders user (its deploy rights)."""
    admin = VhostAdmin()
    suffix = os.urandom(4).hex()
    name = f"fw-schedule-{suffix}"
    admin_user = url_for(amqp_url, name).split("://", 1)[1].split(":", 1)[0]
    user, password = f"{SERVICE}-{suffix}", os.urandom(12).hex()
    admin.add_vhost(name)
    try:
        admin.set_permissions(name, admin_user, Permissions(".*", ".*", ".*"))
        admin.add_user(user, password)
        admin.set_permissions(name, user, ORDERS)
        yield Vhost(url_for(amqp_url, name), url_for(amqp_url, name, user, password))
    finally:
        admin.delete_vhost(name)
        with contextlib.suppress(Exception):
            admin.delete_user(user)


async def test_service_user_schedules_once_the_admin_declared_the_countdown(
    vhost: Vhost,
) -> None:
    """Before the admin step a scheduled send is refused saying what to run; after it the
    service user's scheduled command reaches its worker."""
    exchanges = await asyncio.to_thread(framework, vhost.admin_url, "declare-exchanges")
    assert exchanges.returncode == 0, exchanges.stderr
    handled = asyncio.Event()

    class ChaseWorker(Worker):
        queue = f"{SERVICE}.chase"

        async def handle(self, msg: Chase, ctx: Context) -> None:
            handled.set()

    async with Bus.connect(vhost.service_url, service=SERVICE) as bus:
        with pytest.raises(ConfigurationError, match="declare-exchanges --schedule"):
            await bus.send(Chase(n=1), delay=0.2)
        declared = await asyncio.to_thread(
            framework, vhost.admin_url, "declare-exchanges", "--schedule"
        )
        assert declared.returncode == 0, declared.stderr
        assert declared.stdout.splitlines()[-1] == "fw.schedule: declared (23 stages)"
        worker = ChaseWorker(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await bus.send(Chase(n=1), delay=0.2)
            async with asyncio.timeout(20):
                await handled.wait()
        finally:
            await worker.stop()
            await task
