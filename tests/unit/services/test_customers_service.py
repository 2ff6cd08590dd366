"""customers: the owner publishes its data and answers refresh requests with a snapshot."""

from __future__ import annotations

from schemas.customers import CustomerUpdated, RefreshCustomers
from services.customers.directory import Directory
from services.customers.worker import CustomerWorker
from tests.unit.services.service_fakes import RecordingBus, context


def test_update_bumps_the_version() -> None:
    """Every change gets the next version, which replicas use to order updates."""
    directory = Directory.sample(2)
    assert directory.update("c1", email="new@example.com").version == 2
    assert directory.update("c9", name="New").version == 1


async def test_refresh_republishes_a_snapshot() -> None:
    """RefreshCustomers: one CustomerUpdated per customer (or per requested id)."""
    bus = RecordingBus()
    worker = CustomerWorker(bus, Directory.sample(3))  # type: ignore[arg-type]
    await worker.handle(RefreshCustomers(requested_by="t"), context(bus))
    assert [e.customer_id for e in bus.published if isinstance(e, CustomerUpdated)] == [
        "c0",
        "c1",
        "c2",
    ]
    bus.published.clear()
    await worker.handle(
        RefreshCustomers(requested_by="t", customer_ids=["c2", "zz"]), context(bus, "m-2")
    )
    assert [e.customer_id for e in bus.published if isinstance(e, CustomerUpdated)] == ["c2"]


async def test_changes_and_start_up_publish_with_version_keys() -> None:
    """Announcements use `customer-<id>-v<version>` keys, so repeats are duplicates."""
    bus = RecordingBus()
    worker = CustomerWorker(bus, Directory.sample(1))  # type: ignore[arg-type]
    await worker.publish_all()
    event = await worker.update("c0", email="x@example.com")
    assert event.version == 2
    assert bus.keys == ["customer-c0-v1", "customer-c0-v2"]
