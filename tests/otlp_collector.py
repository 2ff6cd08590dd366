"""A minimal OTLP/HTTP collector on 127.0.0.1 for the tracing tests: keeps what is POSTed to
/v1/traces (protobuf) and tells when a span of a given name arrived."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass
class Collected:
    endpoint: str  # for OTEL_EXPORTER_OTLP_ENDPOINT
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def span_names(self) -> list[str]:
        return [
            span.name
            for request in list(self.requests)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def wait_for_span(self, name: str, timeout: float) -> bool:
        """Block until a span named `name` has arrived (False: not within `timeout` s)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: name in self.span_names(), timeout)


@contextmanager
def otlp_collector() -> Iterator[Collected]:
    """Serve a collector until the block ends."""
    collected = Collected("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                with collected.arrived:
                    collected.requests.append(ExportTraceServiceRequest.FromString(body))
                    collected.arrived.notify_all()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    collected.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collected
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
