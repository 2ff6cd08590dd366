"""The Grafana dashboard and the KEDA manifests refer to things that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from framework.metrics import Metrics
from framework.settlement import Ack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_dashboard_queries_only_exported_metrics() -> None:
    """Every framework_* series the dashboard queries is one the Metrics class exports."""
    metrics = Metrics()
    metrics.record("q", Ack(), 0.1)
    exported = set(re.findall(r"^# TYPE (\w+) ", metrics.render().decode(), re.MULTILINE))
    series = {name for family in exported
              for name in (family, f"{family}_total", f"{family}_bucket")}
    dashboard = json.loads((DEPLOY / "grafana" / "framework-dashboard.json").read_text())
    queried = set(re.findall(r"framework_\w+", json.dumps(dashboard["panels"])))
    assert queried and queried <= series, queried - series


def test_keda_scales_the_orders_deployment_on_its_queue() -> None:
    """The ScaledObject targets the orders Deployment with the RabbitMQ scaler on `orders`."""
    text = (DEPLOY / "k8s" / "orders.yaml").read_text()
    assert "kind: ScaledObject" in text and "kind: Deployment" in text
    assert "type: rabbitmq" in text and "queueName: orders" in text
    assert "name: orders-worker" in text and "/readyz" in text and "/healthz" in text
