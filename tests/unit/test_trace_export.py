"""`framework run`'s span export: configured from the standard OTEL_* variables."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from framework.ops.trace_export import requested_exporters, tracer_provider_from_env
from tests.otlp_collector import Collected, otlp_collector


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_which_exporters_the_environment_asks_for(env: dict[str, str], wanted: list[str]) -> None:
    """An endpoint or OTEL_TRACES_EXPORTER asks for export; none and a disabled SDK do not."""
    assert requested_exporters(env) == wanted


def test_nothing_asked_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_* variables there is no provider (the worker runs without spans)."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracer_provider_from_env("orders") is None


@pytest.fixture
def collector() -> Iterator[Collected]:
    with otlp_collector() as collected:
        yield collected


def test_spans_reach_the_otlp_endpoint_named_in_the_environment(
    collector: Collected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT: spans are exported there over OTLP/HTTP, under the
    worker's service name; shutting the provider down flushes the batch."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    provider = tracer_provider_from_env("orders")
    assert provider is not None
    with provider.get_tracer("test").start_as_current_span("process orders"):
        pass
    provider.shutdown()
    [request] = collector.requests
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "orders"
    assert collector.span_names() == ["process orders"]


def test_otel_service_name_wins(collector: Collected, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SERVICE_NAME names the service rather than the worker's own name."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-eu")
    provider = tracer_provider_from_env("orders")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "orders-eu"
    provider.shutdown()


def _hide(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """Make the modules under `prefix` unimportable, as if not installed."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, prefix, None)


def test_asked_for_without_the_sdk_warns_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OTLP endpoint but no opentelemetry-sdk: a warning naming the extra, no provider."""
    _hide(monkeypatch, "opentelemetry.sdk")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    with capture_logs() as logs:
        provider = tracer_provider_from_env("orders")
    assert provider is None
    [warning] = logs
    assert warning["event"] == "tracing.sdk_missing" and warning["log_level"] == "warning"
    assert "framework[otlp]" in warning["hint"]


def test_asked_for_without_the_exporter_warns_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTLP over gRPC without its exporter package: a warning naming the package."""
    _hide(monkeypatch, "opentelemetry.exporter.otlp.proto.grpc")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with capture_logs() as logs:
        provider = tracer_provider_from_env("orders")
    assert provider is None
    [warning] = logs
    assert warning["event"] == "tracing.exporter_missing"
    assert "opentelemetry-exporter-otlp-proto-grpc" in warning["hint"]
