"""The permissions of deploy/rabbitmq/definitions.json hold on a real broker, as each service
user, on a vhost this module creates and deletes: a service cannot delete the shared
exchanges or write into another service's queues, and its worker still retries and
dead-letters; an exchange deleted and re-created is healed without a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from aio_pika.exceptions import PublishError
from aiormq.exceptions import ChannelAccessRefused

from framework import Bus, Command, Context, Event, PermanentError, Worker
from framework.consume.worker_spec import build_spec
from framework.errors import ConfigurationError
from framework.resilience.backoff import RetryPolicy
from framework.resilience.load_status import LOAD_TOPOLOGY
from framework.settings import Settings
from framework.testing import BrokerAdmin, eventually
from framework.wire import names
from framework.wire.declare import declare, ensure_shared_exchange
from framework.wire.topology import EXCHANGES, QueueOptions, worker_topology
from tests.integration.cli_runner import framework
from tests.integration.vhost_admin import Permissions, VhostAdmin, url_for

DEFINITIONS = json.loads(
    (Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json").read_text()
)
SERVICE_PERMISSIONS = {
    p["user"]: Permissions(p["configure"], p["write"], p["read"])
    for p in DEFINITIONS["permissions"]
    if p["user"] not in ("admin", "keda")
}
SERVICES = sorted(SERVICE_PERMISSIONS)


class Job(Command):
    type_name = "tests.privilege.Job"
    n: int


class HealPing(Event):
    type_name = "tests.privilege.HealPing"
    n: int


@dataclass(frozen=True)
class Vhost:
    """The module's vhost: an admin URL and one user per service with its deploy rights."""

    name: str
    admin_url: str
    users: dict[str, tuple[str, str]]

    def url(self, service: str) -> str:
        user, password = self.users[service]
        return url_for(self.admin_url, self.name, user, password)


@pytest.fixture(scope="module")
def vhost(amqp_url: str) -> Iterator[Vhost]:
    """A fresh vhost; the admin (the URL's user) has every right, each service user exactly
    the rights definitions.json gives it on `/`. Users and vhost are deleted afterwards."""
    admin = VhostAdmin()
    suffix = os.urandom(4).hex()
    name = f"fw-privilege-{suffix}"
    admin_user = url_for(amqp_url, name).split("://", 1)[1].split(":", 1)[0]
    users = {s: (f"{s}-{suffix}", os.urandom(12).hex()) for s in SERVICES}
    admin.add_vhost(name)
    try:
        admin.set_permissions(name, admin_user, Permissions(".*", ".*", ".*"))
        for service, (user, password) in users.items():
            admin.add_user(user, password)
            admin.set_permissions(name, user, SERVICE_PERMISSIONS[service])
        yield Vhost(name, url_for(amqp_url, name), users)
    finally:
        admin.delete_vhost(name)
        for user, _ in users.values():
            with contextlib.suppress(Exception):
                admin.delete_user(user)


@pytest.fixture
async def admin_conn(vhost: Vhost) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """An admin connection to the vhost, after the admin step created the shared exchanges."""
    connection = await aio_pika.connect_robust(vhost.admin_url)
    for spec in (EXCHANGES + LOAD_TOPOLOGY).exchanges:
        await ensure_shared_exchange(connection, spec)
    yield connection
    await connection.close()


def _topology(queue: str) -> object:
    return worker_topology(queue, {}, RetryPolicy(base_delay=1.0, max_delay=2.0), QueueOptions())


@pytest.mark.parametrize("service", SERVICES)
async def test_service_user_cannot_delete_the_shared_exchanges(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection, service: str
) -> None:
    """Deleting fw.commands, fw.events or fw.load needs configure permission, which no
    service has."""
    async with await aio_pika.connect(vhost.url(service)) as connection:
        for exchange in (names.COMMANDS_EXCHANGE, names.EVENTS_EXCHANGE, names.LOAD_EXCHANGE):
            channel = await connection.channel()
            with pytest.raises(ChannelAccessRefused):
                await channel.exchange_delete(exchange)
    for spec in (EXCHANGES + LOAD_TOPOLOGY).exchanges:  # still there
        assert await ensure_shared_exchange(admin_conn, spec, create=False) is False


@pytest.mark.parametrize("service", SERVICES)
async def test_service_user_cannot_publish_into_another_services_queues(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection, service: str
) -> None:
    """Neither through the default exchange nor through the other service's moves exchange."""
    other = next(s for s in SERVICES if s != service)
    await declare(admin_conn, _topology(other))  # type: ignore[arg-type]
    async with await aio_pika.connect(vhost.url(service)) as connection:
        attempts = [
            ("", other),
            ("", names.dlq_name(other)),
            (names.moves_exchange(other), names.dlq_name(other)),
        ]
        for exchange_name, routing_key in attempts:
            channel = await connection.channel(publisher_confirms=True)
            exchange = (
                channel.default_exchange
                if exchange_name == ""
                else await channel.get_exchange(exchange_name, ensure=False)
            )
            with pytest.raises(ChannelAccessRefused):
                await exchange.publish(aio_pika.Message(b"{}", message_id="intruder"), routing_key)
    async with BrokerAdmin.connect(vhost.admin_url) as broker:
        assert await broker.depth(other) == 0
        assert await broker.depth(names.dlq_name(other)) == 0
        await broker.delete_worker_queues(other, [1000, 2000])


@pytest.mark.parametrize("service", SERVICES)
async def test_service_worker_retries_and_dead_letters_with_its_own_rights(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection, service: str
) -> None:
    """As the service user: declare, a transient failure retried, a permanent one
    dead-lettered, all without write access to the default exchange."""
    handled: list[tuple[int, int]] = []
    done = asyncio.Event()

    class ServiceWorker(Worker):
        queue = service
        max_attempts = 3
        retry_base_delay = 0.2
        retry_max_delay = 0.4

        async def handle(self, msg: Job, ctx: Context) -> None:
            if msg.n == 2:
                raise PermanentError("bad job")
            if ctx.attempt == 1:
                raise RuntimeError("flaky")
            handled.append((msg.n, ctx.attempt))
            done.set()

    async with Bus.connect(vhost.url(service), service=service) as bus:
        worker = ServiceWorker(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await bus.send(Job(n=1), idempotency_key=f"{service}-1")
            await bus.send(Job(n=2), idempotency_key=f"{service}-2")
            async with asyncio.timeout(20):
                await done.wait()
        finally:
            await worker.stop()
            await task
    assert handled == [(1, 2)]
    assert worker.stats.retried == 1 and worker.stats.dead_lettered == 1
    assert worker.stats.settle_failures == 0
    async with BrokerAdmin.connect(vhost.admin_url) as broker:
        assert await broker.wait_for_depth(names.dlq_name(service), 1, timeout=10) == 1
        [dead] = await broker.drain(names.dlq_name(service))
        assert dead.message_id == f"{service}-2"
        assert dead.headers[names.REASON] == "permanent"
        assert dead.headers[names.ORIGINAL_QUEUE] == service
        await broker.delete_worker_queues(service, list(worker.spec.policy.tiers_ms()))


async def test_service_sheds_by_forecast_with_its_own_rights(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection
) -> None:
    """As the service user, with shedding by forecast on: its worker publishes load reports
    on fw.load and its bus follows them (its own exclusive queue), with no new rights."""
    service = SERVICES[0]

    class ServiceWorker(Worker):
        queue = service

        async def handle(self, msg: Job, ctx: Context) -> None:
            pass

    settings = Settings(shed_by_forecast=True, load_report_interval=0.2)
    async with Bus.connect(vhost.url(service), service=service, settings=settings) as bus:
        worker = ServiceWorker(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await bus.send(Job(n=1), ttl=30.0)
            follower = bus.load
            assert follower is not None
            await eventually(
                lambda: follower.board.predicted_wait(Job.type_name, time.monotonic()) is not None,
                timeout=10,
            )
        finally:
            await worker.stop()
            await task
    async with BrokerAdmin.connect(vhost.admin_url) as broker:
        await broker.delete_worker_queues(service, list(worker.spec.policy.tiers_ms()))


async def test_queues_of_an_older_framework_keep_working(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection
) -> None:
    """Queues an older framework declared (dead letters via the default exchange, which a
    service user may no longer declare) are accepted as they are: retry and DLQ still work."""
    service = SERVICES[0]
    legacy_queue = f"{service}.legacy"
    handled: list[tuple[int, int]] = []
    done = asyncio.Event()

    class LegacyWorker(Worker):
        queue = legacy_queue
        max_attempts = 3
        retry_base_delay = 0.2
        retry_max_delay = 0.4

        async def handle(self, msg: Job, ctx: Context) -> None:
            if msg.n == 2:
                raise PermanentError("bad job")
            if ctx.attempt == 1:
                raise RuntimeError("flaky")
            handled.append((msg.n, ctx.attempt))
            done.set()

    topology = build_spec(LegacyWorker).topology
    async with admin_conn.channel() as channel:  # what an older framework declared
        for queue_spec in topology.queues:
            arguments = queue_spec.legacy_arguments or queue_spec.arguments
            await channel.declare_queue(queue_spec.name, durable=True, arguments=dict(arguments))
    async with await aio_pika.connect(vhost.url(service)) as connection:
        await declare(connection, topology)  # the old arguments are accepted as they are
    async with Bus.connect(vhost.url(service), service=service) as bus:
        worker = LegacyWorker(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            await bus.send(Job(n=1), idempotency_key="legacy-1")
            await bus.send(Job(n=2), idempotency_key="legacy-2")
            async with asyncio.timeout(20):
                await done.wait()
        finally:
            await worker.stop()
            await task
    assert handled == [(1, 2)]
    async with BrokerAdmin.connect(vhost.admin_url) as broker:
        assert await broker.wait_for_depth(names.dlq_name(legacy_queue), 1, timeout=10) == 1
        await broker.delete_worker_queues(legacy_queue, list(worker.spec.policy.tiers_ms()))


async def test_deleted_and_recreated_exchange_is_healed_without_reconnect(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection
) -> None:
    """fw.events deleted (its bindings go with it) and re-created by the admin: the worker's
    binding comes back on the bus's topology check; no reconnect happens. Meanwhile a new
    service bus refuses to start with an error that says what the admin must run."""
    service = SERVICES[0]
    heal_queue = f"{service}.heal"
    seen: list[int] = []
    arrived = asyncio.Event()
    reconnects: list[int] = []

    class Subscriber(Worker):
        queue = heal_queue

        async def handle(self, msg: HealPing, ctx: Context) -> None:
            seen.append(msg.n)
            arrived.set()

    settings = Settings(topology_check_interval=0.2)
    async with Bus.connect(vhost.url(service), service=service, settings=settings) as bus:

        async def on_reconnect() -> None:
            reconnects.append(1)

        bus.add_reconnect_listener(on_reconnect)
        worker = Subscriber(bus)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            channel = await admin_conn.channel()
            await channel.exchange_delete(names.EVENTS_EXCHANGE)
            with pytest.raises(ConfigurationError, match="framework declare-exchanges"):
                async with Bus.connect(vhost.url(service), service=service):
                    pass
            await ensure_shared_exchange(admin_conn, EXCHANGES.exchanges[1])
            await _publish_until_routed(admin_conn, HealPing(n=7))
            async with asyncio.timeout(10):
                await arrived.wait()
        finally:
            await worker.stop()
            await task
        assert bus.is_connected
    assert seen == [7]
    assert reconnects == []
    async with BrokerAdmin.connect(vhost.admin_url) as broker:
        await broker.delete_worker_queues(heal_queue, list(worker.spec.policy.tiers_ms()))


async def _publish_until_routed(
    connection: aio_pika.abc.AbstractRobustConnection, event: HealPing, timeout: float = 10.0
) -> None:
    """Publish `event` (mandatory) until the broker routes it to some queue: the binding is
    back. The broker signals no binding changes, so trying again is the only way to see it."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(names.EVENTS_EXCHANGE, ensure=False)
    message = aio_pika.Message(
        event.model_dump_json().encode(),
        message_id="heal-probe",
        type=event.type_name,
        content_type=names.CONTENT_TYPE,
    )
    async with asyncio.timeout(timeout):
        while True:
            try:
                await exchange.publish(message, event.type_name, mandatory=True)
                return
            except PublishError:  # returned: nobody bound yet
                await asyncio.sleep(0.1)


async def test_declare_exchanges_is_the_admin_step(
    vhost: Vhost, admin_conn: aio_pika.abc.AbstractRobustConnection
) -> None:
    """`framework declare-exchanges` as a service user: one error line saying who may; as
    the admin: the missing exchange is created, the other left as it is."""
    channel = await admin_conn.channel()
    await channel.exchange_delete(names.COMMANDS_EXCHANGE)
    service = SERVICES[0]
    refused = await asyncio.to_thread(framework, vhost.url(service), "declare-exchanges")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: exchange 'fw.commands' does not exist")
    assert "framework declare-exchanges" in line
    created = await asyncio.to_thread(framework, vhost.admin_url, "declare-exchanges")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [
        "fw.commands: created",
        "fw.events: already there",
        "fw.load: already there",
    ]
