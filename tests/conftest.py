"""Markers by folder (tests/unit are unit, tests/integration integration, tests/chaos chaos),
and fixtures that tests in more than one folder use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for marker in ("unit", "integration", "chaos"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))


# ---- OpenTelemetry: a tracer provider of the test only, exporting to memory ---------------
# (imported inside the fixtures: the SDK is a dev dependency, not needed by every test run)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Where the test's spans end up (read with `exporter.get_finished_spans()`)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A tracer provider of this test only (never the global one), exporting to `exporter`."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()
