"""`notifications` scaled out: two NotificationWorker processes (as the service's own broker
user, on a vhost of this test) each keep a complete customers replica, and every payment
becomes exactly one receipt. With the customer events on the shared queue only, each
CustomerUpdated would reach one of the two processes and the replicas would never agree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framework import Bus
from framework.consume.worker_spec import build_spec
from framework.testing import BrokerAdmin, eventually
from framework.wire import names
from schemas.customers import CustomerUpdated
from schemas.payments import PaymentFailed, PaymentSucceeded
from services.notifications.mailer import Mailer
from services.notifications.worker import NotificationWorker, ReceiptWorker
from tests.integration.vhost_admin import Permissions, VhostAdmin, url_for

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DEFINITIONS = json.loads((REPO / "deploy" / "rabbitmq" / "definitions.json").read_text())
NOTIFICATIONS = next(p for p in DEFINITIONS["permissions"] if p["user"] == "notifications")
CUSTOMERS = 12
VERSIONS = (2, 1, 3)  # per customer, in this order: a late older version must not win
PAYMENTS = 24


@dataclass(frozen=True)
class Vhost:
    admin_url: str  # every right
    service_url: str  # the notifications user, with its rights from definitions.json


@pytest.fixture
def vhost(amqp_url: str) -> Iterator[Vhost]:
    """A fresh vhost (its queues are this test's only) and a notifications user on it."""
    admin = VhostAdmin()
    suffix = os.urandom(4).hex()
    name, user, password = f"fw-scale-{suffix}", f"notifications-{suffix}", os.urandom(12).hex()
    admin_user = url_for(amqp_url, name).split("://", 1)[1].split(":", 1)[0]
    admin.add_vhost(name)
    try:
        admin.set_permissions(name, admin_user, Permissions(".*", ".*", ".*"))
        admin.add_user(user, password)
        rights = Permissions(
            NOTIFICATIONS["configure"], NOTIFICATIONS["write"], NOTIFICATIONS["read"]
        )
        admin.set_permissions(name, user, rights)
        yield Vhost(url_for(amqp_url, name), url_for(amqp_url, name, user, password))
    finally:
        admin.delete_vhost(name)
        admin.delete_user(user)


class RecordingReceipts(ReceiptWorker):
    """The real receipt worker with a mailer the test reads."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, Mailer())


@contextlib.asynccontextmanager
async def running(worker: RecordingReceipts) -> AsyncIterator[RecordingReceipts]:
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        yield worker
    finally:
        await worker.stop()
        await task


@dataclass
class Instance:
    name: str
    replica: Path
    log: Path
    process: asyncio.subprocess.Process

    def versions(self) -> dict[str, int]:
        """The customer versions in this instance's SQLite replica (read while it runs)."""
        if not self.replica.exists():
            return {}
        with contextlib.closing(sqlite3.connect(self.replica, timeout=5)) as db:
            try:
                rows = db.execute("SELECT entity_id, version FROM replica_customers").fetchall()
            except sqlite3.OperationalError:  # the table is not created yet
                return {}
        return dict(rows)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


async def start_instance(name: str, url: str, tmp_path: Path) -> Instance:
    log = tmp_path / f"notifications-{name}.log"
    env = {
        **os.environ,
        "AMQP_URL": url,
        "FRAMEWORK_IDEMPOTENCY_URL": REDIS_URL,  # shared, as in deploy/: scoped per queue
        "FRAMEWORK_LOG_FORMAT": "json",
        "NOTIFICATIONS_INSTANCE": name,
        "NOTIFICATIONS_REPLICA_PATH": str(tmp_path / "customers-{instance}.db"),
    }
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework",
            "run",
            "services.notifications.worker:NotificationWorker",
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    return Instance(name, tmp_path / f"customers-{name}.db", log, process)


async def stop_instance(instance: Instance) -> int | None:
    if instance.process.returncode is None:
        instance.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(instance.process.wait(), 20)
    except TimeoutError:
        instance.process.kill()
        await instance.process.wait()
        return None


def customer(n: int, version: int) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id=f"c{n}",
        version=version,
        name=f"Customer {n} v{version}",
        email=f"c{n}.v{version}@example.com",
    )


def payment(n: int) -> PaymentSucceeded | PaymentFailed:
    order, customer_id = f"o{n}", f"c{n % CUSTOMERS}"
    if n % 2:
        return PaymentFailed(
            order_id=order, customer_id=customer_id, amount_cents=n, reason="card declined"
        )
    return PaymentSucceeded(
        order_id=order, customer_id=customer_id, amount_cents=n, payment_id=order
    )


@pytest.mark.timeout(90)
async def test_two_instances_each_get_every_customer_and_send_each_receipt_once(
    vhost: Vhost, tmp_path: Path
) -> None:
    """Both replicas converge to the newest version of every customer; each payment, taken
    by either instance, becomes exactly one receipt with that customer's current email."""
    expected = {f"c{n}": max(VERSIONS) for n in range(CUSTOMERS)}
    async with (
        Bus.connect(vhost.admin_url, service="tests") as bus,
        BrokerAdmin.connect(vhost.admin_url) as broker,
    ):
        await bus.declare(NotificationWorker)  # creates the shared exchanges (an admin's job)
        instances = [await start_instance(n, vhost.service_url, tmp_path) for n in ("a", "b")]
        try:
            async with running(RecordingReceipts(bus)) as receipts:
                # each instance subscribes its own customer feed before the shared queue
                await broker.wait_for_consumers("notifications", 2)

                for version in VERSIONS:
                    for n in range(CUSTOMERS):
                        await bus.publish(customer(n, version))
                try:
                    await eventually(
                        lambda: all(i.versions() == expected for i in instances), 20, 0.1
                    )
                except TimeoutError:
                    pytest.fail(
                        "replicas did not converge: "
                        + "; ".join(f"{i.name}: {sorted(i.versions().items())}" for i in instances)
                    )

                for n in range(PAYMENTS):
                    await bus.publish(payment(n))
                await eventually(lambda: len(receipts.mailer.sent) >= PAYMENTS, 20, 0.1)
                codes = [await stop_instance(i) for i in instances]
                assert codes == [0, 0], [i.log_tail() for i in instances]
                # both stopped gracefully: every payment is settled, none can come again
                policy = build_spec(NotificationWorker).policy
                for queue in (
                    "notifications",
                    names.dlq_name("notifications"),
                    *(names.retry_queue_name("notifications", t) for t in policy.tiers_ms()),
                ):
                    assert await broker.depth(queue) == 0, queue
                await broker.wait_drained(receipts)
        finally:
            for instance in instances:
                await stop_instance(instance)

    per_order = Counter(order_of(e.subject) for e in receipts.mailer.sent)
    assert per_order == Counter({f"o{n}": 1 for n in range(PAYMENTS)})
    emails = {order_of(e.subject): e.to for e in receipts.mailer.sent}
    assert emails == {
        f"o{n}": f"c{n % CUSTOMERS}.v{max(VERSIONS)}@example.com" for n in range(PAYMENTS)
    }


def order_of(subject: str) -> str:
    found = re.search(r"order (\S+)", subject)
    assert found, subject
    return found.group(1)
