"""Old module paths keep working: `framework.names` is `framework.wire.names`, and so on.

Modules moved into packages by flow (wire/, consume/, publish/, resilience/, replica/,
contracts/, ops/). Code written against the old flat layout imports them by their old names;
this finder hands it the module at its new place (the same module object, not a copy).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "names": "wire.names",
    "envelope": "wire.envelope",
    "amqp_properties": "wire.properties",
    "header_values": "wire.header_values",
    "header_limits": "wire.header_limits",
    "message_size": "wire.message_size",
    "keys": "wire.keys",
    "topology": "wire.topology",
    "declare": "wire.declare",
    "wire_guard": "wire.guard",
    "urls": "wire.urls",
    "connection": "wire.connection",
    "robust": "wire.robust",
    "transport": "wire.transport",
    "publisher": "wire.publisher",
    "consumer": "wire.consumer",
    "acks": "wire.acks",
    "delivery": "wire.delivery",
    "handling": "consume.handling",
    "settle": "consume.settle",
    "settlement": "consume.decisions",
    "deferrals": "consume.deferrals",
    "deadlines": "consume.deadlines",
    "shutdown": "consume.shutdown",
    "loop_lag": "consume.loop_lag",
    "worker_spec": "consume.worker_spec",
    "startup_checks": "consume.startup_checks",
    "broker_checks": "consume.broker_checks",
    "breaker_gate": "consume.breaker_gate",
    "outgoing": "publish.outgoing",
    "send_batch": "publish.send_batch",
    "send_retry": "publish.send_retry",
    "request_reply": "publish.request_reply",
    "reply": "publish.reply",
    "retrying": "resilience.retrying",
    "backoff": "resilience.backoff",
    "breaker": "resilience.breaker",
    "log_throttle": "resilience.log_throttle",
    "replica_feed": "replica.feed",
    "replica_refresh": "replica.refresh",
    "replica_store": "replica.store",
    "discovery": "contracts.discovery",
    "compat": "contracts.compatibility",
    "schema_export": "contracts.schema_export",
    "asyncapi": "contracts.asyncapi",
    "loading": "contracts.loading",
    "project": "contracts.project",
    "dlq": "ops.dlq",
    "dead_letters": "ops.dead_letter_headers",
    "failure_groups": "ops.failure_groups",
    "queue_borrow": "ops.queue_borrow",
    "queue_source": "ops.queue_source",
    "queue_stats": "ops.queue_stats",
    "management": "ops.management",
    "scaling": "ops.scaling",
    "metrics": "ops.metrics",
    "observability": "ops.observability",
    "probe_server": "ops.probe_server",
    "stats": "ops.stats",
    "sla": "ops.sla",
    "spans": "ops.spans",
    "tracing": "ops.tracing",
    "trace_export": "ops.trace_export",
    "logs": "ops.logs",
    "gc_tuning": "ops.gc_tuning",
    "eventloop": "ops.eventloop",
    "runner": "ops.runner",
    "sqlite_open": "idempotency.sqlite_open",
    "broker_port": "wire.port",
    "rabbit_port": "wire.rabbitmq",
    "schedule_declare": "wire.schedule_declare",
    "heartbeat": "consume.heartbeat",
    "not_before": "consume.not_before",
    "ordering": "consume.ordering",
    "partitioned_consumer": "consume.partitions",
    "settlement_log": "consume.settlement_log",
    "scheduling": "publish.scheduling",
    "send_results": "publish.send_results",
    "load_forecast": "resilience.load_forecast",
    "load_status": "resilience.load_status",
    "rate_limit": "resilience.rate_limit",
    "rate_core": "resilience.rate_core",
    "rate_redis": "resilience.rate_redis",
    "traceparent": "ops.traceparent",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "framework" or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(f"framework.{MOVED[spec.name.rpartition('.')[2]]}")
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported at its new place."""


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
