"""A tiny HTTP server for Prometheus scrapes and Kubernetes probes, owned by `async with`.

GET /metrics (Prometheus text), /healthz (liveness: the process is not stuck), /readyz
(readiness: it can receive deliveries now, and its idempotency store answers). Plain asyncio
streams, one request per connection: no web framework for three fixed routes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_TEXT = "text/plain; charset=utf-8"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod


@dataclass(frozen=True, slots=True)
class Probes:
    """What the server asks on each request."""

    metrics: Callable[[], bytes]
    healthy: Callable[[], bool]
    ready: Callable[[], bool]
    before_scrape: Callable[[], Awaitable[None]] | None = None
    # a second readiness input: the idempotency store answers (False while its calls fail)
    store_ready: Callable[[], bool] = lambda: True
    broker: Callable[[], str] | None = None  # the masked URL in use, for the /healthz body


class ProbeServer:
    """Serves /metrics, /healthz and /readyz on `host:port` (port 0: any free port)."""

    def __init__(
        self,
        probes: Probes,
        *,
        port: int = 0,
        host: str = ALL_INTERFACES,
        request_timeout: float = 10.0,
    ) -> None:
        self._probes = probes
        self._host = host
        self._requested_port = port
        self._timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._log = structlog.get_logger("framework.probes")

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the probe server is not running: use `async with`")
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> ProbeServer:
        self._server = await asyncio.start_server(self._serve, self._host, self._requested_port)
        self._log.info("probes.listening", host=self._host, port=self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                method, path = await _read_request(reader)
                status, content_type, body = await self._respond(method, path)
                head = (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}"
                    f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode() + (b"" if method == "HEAD" else body))
                await writer.drain()
        except (TimeoutError, ConnectionError, ValueError) as exc:
            # a client that hung up or spoke nonsense; the next scrape is unaffected
            self._log.debug("probes.bad_request", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"only GET\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            if self._probes.before_scrape is not None:
                await self._probes.before_scrape()
            return 200, CONTENT_TYPE_LATEST, self._probes.metrics()
        if route == "/healthz":
            where = f" {self._probes.broker()}" if self._probes.broker is not None else ""
            return _status(
                self._probes.healthy(),
                f"alive{where}",
                f"not alive: worker stopped or stuck{where}",
            )
        if route == "/readyz" and not self._probes.store_ready():
            return _status(False, "", "idempotency store failing")
        if route == "/readyz":
            return _status(
                self._probes.ready(),
                "consuming",
                "not consuming (starting, stopping or broker unreachable)",
            )
        return 404, _TEXT, b"try /metrics, /healthz or /readyz\n"


def _status(ok: bool, good: str, bad: str) -> tuple[int, str, bytes]:
    return (200, _TEXT, f"{good}\n".encode()) if ok else (503, _TEXT, f"{bad}\n".encode())


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of an HTTP/1.x request; the headers are read and ignored."""
    parts = (await reader.readline()).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {parts!r}")
    while (await reader.readline()).strip():
        pass
    return parts[0].upper(), parts[1]
