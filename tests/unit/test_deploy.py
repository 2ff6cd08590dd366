"""deploy/: every manifest parses, and each service's broker user can reach its own queues
and the framework's exchanges, but not another service's queues."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from framework import names
from framework.worker_spec import build_spec
from services.customers.worker import CustomerWorker
from services.notifications.worker import NotificationWorker, ReceiptWorker
from services.orders.worker import OrderWorker
from services.payments.worker import PaymentWorker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WORKERS = (CustomerWorker, OrderWorker, PaymentWorker, NotificationWorker, ReceiptWorker)
SERVICES = sorted({str(w.service) for w in WORKERS})
DEFINITIONS = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
PERMISSIONS = {p["user"]: p for p in DEFINITIONS["permissions"]}


def queues_of(service: str) -> list[str]:
    """Every queue a service's workers use: main, DLQ, delay tiers."""
    found = []
    for worker in WORKERS:
        if worker.service == service:
            spec = build_spec(worker)
            found += [spec.queue, names.dlq_name(spec.queue),
                      *(names.retry_queue_name(spec.queue, t) for t in spec.policy.tiers_ms())]
    return found


def allows(user: str, kind: str, resource: str) -> bool:
    return re.fullmatch(PERMISSIONS[user][kind], resource) is not None


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    """Every YAML manifest is valid YAML with at least one document."""
    assert [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_reaches_its_own_queues_and_the_exchanges(service: str) -> None:
    """Declare, publish to and consume its queues; declare and use fw.commands/fw.events."""
    for queue in queues_of(service):
        for kind in ("configure", "write", "read"):
            assert allows(service, kind, queue), (service, kind, queue)
    for exchange in (names.COMMANDS_EXCHANGE, names.EVENTS_EXCHANGE):
        for kind in ("configure", "write", "read"):
            assert allows(service, kind, exchange), (service, kind, exchange)
    assert allows(service, "write", "amq.default"), "retry and DLQ moves publish via ''"


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_touch_other_services_queues(service: str) -> None:
    """Least privilege: no configure, write or read on any queue of another service."""
    for other in SERVICES:
        if other == service:
            continue
        for queue in queues_of(other):
            for kind in ("configure", "write", "read"):
                assert not allows(service, kind, queue), (service, kind, queue)


def test_every_service_has_a_user_and_a_deployment() -> None:
    """Names in definitions.json, docker-compose.yml and deploy/k8s match the code."""
    users = {u["name"] for u in DEFINITIONS["users"]}
    assert set(SERVICES) <= users
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    commands = {" ".join(s.get("command", [])) for s in compose["services"].values()}
    for worker in WORKERS:
        target = f"run {worker.__module__}:{worker.__name__}"
        assert target in commands, target
        k8s = (DEPLOY / "k8s" / f"{worker.service}-deployment.yaml").read_text()
        assert f"{worker.__module__}:{worker.__name__}" in k8s
    for service, spec in compose["services"].items():
        url = spec.get("environment", {}).get("AMQP_URL", "")
        user = url.split("//", 1)[1].split(":", 1)[0] if url else None
        assert user is None or user in SERVICES, (service, user)
