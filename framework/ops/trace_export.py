"""`framework run` exporting spans: an SDK tracer provider with a batching exporter, when the
standard OpenTelemetry environment variables ask for one.

Asked for: `OTEL_TRACES_EXPORTER=otlp` (or `console`), or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Never asked for:
`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`. The SDK and the exporter read the
rest of their `OTEL_*` variables themselves (endpoint, headers, timeout, sampler, batch
sizes, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`). Asked for but not installed: a
warning saying what to install, and the worker runs without spans.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_log = structlog.get_logger("framework.tracing")

INSTALL_HINT = "pip install 'framework[otlp]'"
SUPPORTED = ("otlp", "console")
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def requested_exporters(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for (lower case; [] for none)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [n for n in named if n]
    if named:
        return [] if "none" in named else named
    return ["otlp"] if any(env.get(name, "").strip() for name in ENDPOINTS) else []


def tracer_provider_from_env(service: str) -> TracerProvider | None:
    """An SDK tracer provider exporting (in batches) where the environment asks, or None:
    not asked, or the packages it needs are missing (then a warning says what to install).

    `service` is the resource's `service.name` unless `OTEL_SERVICE_NAME` or
    `OTEL_RESOURCE_ATTRIBUTES` name one."""
    env = os.environ
    wanted = requested_exporters(env)
    if not wanted:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warning(
            "tracing.sdk_missing",
            exporters=wanted,
            hint=f"OTEL_* variables ask for span export but opentelemetry-sdk is not "
            f"installed: {INSTALL_HINT}; running without spans",
        )
        return None
    exporters = [e for e in (_exporter(name, env) for name in wanted) if e is not None]
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _log.info("tracing.exporting", exporters=wanted, service=resource.attributes["service.name"])
    return provider


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        _log.warning(
            "tracing.exporter_unsupported",
            exporter=name,
            hint=f"framework run configures only {', '.join(SUPPORTED)}; for another, set "
            "a tracer provider in your worker's module (it is used as it is)",
        )
        return None
    protocol = _protocol(env)
    module, package = _OTLP.get(protocol, (None, None))
    if module is None or package is None:
        _log.warning(
            "tracing.protocol_unsupported",
            protocol=protocol,
            hint=f"OTLP over {' or '.join(_OTLP)} only; running without spans",
        )
        return None
    try:
        exporter_module: Any = __import__(module, fromlist=["OTLPSpanExporter"])
    except ImportError:
        _log.warning(
            "tracing.exporter_missing",
            protocol=protocol,
            hint=f"OTEL_* variables ask for OTLP ({protocol}) but {package} is not installed: "
            f"pip install {package}; running without spans",
        )
        return None
    exporter: SpanExporter = exporter_module.OTLPSpanExporter()
    return exporter


_OTLP = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "opentelemetry-exporter-otlp-proto-grpc",
    ),
}


def _protocol(env: Mapping[str, str]) -> str:
    chosen = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return (chosen or "http/protobuf").strip().lower()


def install_from_env(service: str) -> TracerProvider | None:
    """Set the global tracer provider from the environment (`tracer_provider_from_env`), unless
    one is set already (by the worker's module); returns it so that the caller can flush
    it (`shutdown()`) at exit, or None."""
    try:
        from opentelemetry import trace
    except ImportError:
        if requested_exporters(os.environ):
            _log.warning(
                "tracing.api_missing",
                hint=f"OTEL_* variables ask for span export but opentelemetry is not "
                f"installed: {INSTALL_HINT}; running without spans",
            )
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the application configured its own
    provider = tracer_provider_from_env(service)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider
