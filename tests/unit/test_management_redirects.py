"""Management API credentials never follow a redirect to another origin (local HTTP servers)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from framework.ops.management import ManagementApi, origin


@dataclass
class Recorder:
    """A local HTTP server that records the Authorization header of every request and
    answers either a redirect (when `redirect_to` is set) or an empty queue list."""

    redirect_to: str | None = None
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """Two servers on two ports of 127.0.0.1: the API the client is told about, another one."""
    recorders = (Recorder(), Recorder())
    running = []
    for recorder in recorders:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
        recorder.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
    yield recorders
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _handler(recorder: Recorder) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.seen.append((self.path, self.headers.get("Authorization")))
            if recorder.redirect_to is not None and not self.path.startswith("/moved"):
                self.send_response(302)
                self.send_header("Location", recorder.redirect_to + "/moved" + self.path)
                self.end_headers()
                return
            body = json.dumps([]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads `recorder.seen`."""

    return Handler


def _api(port: int) -> ManagementApi:
    return ManagementApi.from_urls("amqp://u:p@h/", f"http://ops:s3cret@127.0.0.1:{port}/")


async def test_redirect_to_another_port_gets_no_credentials(
    servers: tuple[Recorder, Recorder],
) -> None:
    """A redirect to another port is followed without the Authorization header."""
    api_server, elsewhere = servers
    api_server.redirect_to = f"http://127.0.0.1:{elsewhere.port}"
    assert await _api(api_server.port).queues() == []
    assert api_server.seen[0][1] is not None  # the API itself got the credentials
    assert len(elsewhere.seen) == 1
    assert elsewhere.seen[0][1] is None


async def test_redirect_on_the_same_origin_keeps_credentials(
    servers: tuple[Recorder, Recorder],
) -> None:
    """A redirect within the same scheme, host and port still authenticates."""
    api_server, _ = servers
    api_server.redirect_to = f"http://127.0.0.1:{api_server.port}"
    assert await _api(api_server.port).queues() == []
    [(_, first), (moved, again)] = api_server.seen
    assert moved.startswith("/moved") and again == first is not None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/x", "http://h:80/y", True),
        ("https://h/x", "https://H:443/y", True),
        ("https://h/x", "http://h/x", False),
        ("http://h:15672/", "http://h:15673/", False),
        ("http://h/", "http://evil/", False),
    ],
)
def test_origin_is_scheme_host_and_port(a: str, b: str, same: bool) -> None:
    """Default ports count as given; scheme, host or port changes are another origin."""
    assert (origin(a) == origin(b)) is same
