"""The probe server answers /metrics, /healthz and /readyz over real HTTP."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from framework.ops.probe_server import Probes, ProbeServer


async def get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(fetch)


async def test_routes_and_status_codes() -> None:
    """503 until ready/healthy, 200 after; /metrics refreshes first; unknown paths 404."""
    state = {"healthy": False, "ready": False, "scrapes": 0}

    async def before() -> None:
        state["scrapes"] += 1

    probes = Probes(
        metrics=lambda: b"m 1\n",
        healthy=lambda: bool(state["healthy"]),
        ready=lambda: bool(state["ready"]),
        before_scrape=before,
    )
    async with ProbeServer(probes, host="127.0.0.1") as server:
        assert (await get(server.port, "/healthz"))[0] == 503
        assert (await get(server.port, "/readyz"))[0] == 503
        state["healthy"] = state["ready"] = True
        assert await get(server.port, "/healthz") == (200, "alive\n")
        assert await get(server.port, "/readyz") == (200, "consuming\n")
        assert await get(server.port, "/metrics") == (200, "m 1\n")
        assert state["scrapes"] == 1
        assert (await get(server.port, "/nope"))[0] == 404


async def test_garbage_request_does_not_break_the_server() -> None:
    """A client speaking nonsense is dropped; the next request is served."""
    probes = Probes(metrics=lambda: b"", healthy=lambda: True, ready=lambda: True)
    async with ProbeServer(probes, host="127.0.0.1") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"hello\r\n\r\n")
        await writer.drain()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert (await get(server.port, "/healthz"))[0] == 200


async def test_readyz_is_503_while_the_store_fails() -> None:
    """A consuming worker whose idempotency store fails is not ready; ready again after."""
    store = {"ok": False}
    probes = Probes(
        metrics=lambda: b"",
        healthy=lambda: True,
        ready=lambda: True,
        store_ready=lambda: store["ok"],
    )
    async with ProbeServer(probes, host="127.0.0.1") as server:
        assert await get(server.port, "/readyz") == (503, "idempotency store failing\n")
        assert (await get(server.port, "/healthz"))[0] == 200  # alive: no restart for this
        store["ok"] = True
        assert await get(server.port, "/readyz") == (200, "consuming\n")


async def test_healthz_names_the_broker_in_use() -> None:
    """/healthz says which node the bus is on (masked), alive or not."""
    state = {"healthy": True}
    probes = Probes(
        metrics=lambda: b"",
        healthy=lambda: state["healthy"],
        ready=lambda: True,
        broker=lambda: "amqp://u:***@b:5672/",
    )
    async with ProbeServer(probes, host="127.0.0.1") as server:
        assert await get(server.port, "/healthz") == (200, "alive amqp://u:***@b:5672/\n")
        state["healthy"] = False
        assert await get(server.port, "/healthz") == (
            503,
            "not alive: worker stopped or stuck amqp://u:***@b:5672/\n",
        )
