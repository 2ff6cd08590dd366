"""A small asyncio TCP proxy between AMQP clients and the broker that injects faults.

- `latency`: every chunk forwarded (both directions) waits this long first;
- `stall()`: the links open now stop forwarding in both directions but keep their sockets
  open (a half-open connection: only heartbeats can detect it); bytes are read and dropped;
  new links flow normally;
- `cut()`: close every open link at once (both sockets), like a network reset;
- `refusing = True`: new links are closed as soon as they are accepted (the broker is
  unreachable until it is set back to False).
- `hang()`: a server that stops answering: open links stall and new links are accepted but
  stalled from the start; `unhang()` ends it (the stalled links are reset, as their dropped
  bytes broke their streams; new links flow);
- `refuse()`: a server that is down: every link is cut and new ones are reset at once, until
  `accept()`.

With `fallbacks`, a new link goes to the first target that accepts the TCP connection
(`target`, then each fallback in order): a client-side failover in front of a cluster.

No toxiproxy on these machines, so this is ours. It runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(eq=False)
class Link:
    """One client connection and its upstream connection to the broker."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    stalled: asyncio.Event = field(default_factory=asyncio.Event)  # set = stalled
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    """Listen on 127.0.0.1:<port> and forward to `target_host:target_port`."""

    def __init__(
        self, target_host: str, target_port: int, fallbacks: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.targets = [(target_host, target_port), *fallbacks]
        self.accepted_by: Counter[int] = Counter()  # target port -> links forwarded there
        self.latency = 0.0
        self.links: set[Link] = set()
        self.accepted = 0
        self.cuts = 0
        self.hanging = False
        self.refusing = False
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, amqp_url: str) -> str:
        """`amqp_url` rewritten to go through this proxy."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(amqp_url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ---- faults --------------------------------------------------------------------------

    def stall(self) -> set[Link]:
        """Stop forwarding on every open link, keeping the sockets open. Returns them."""
        stalled = set(self.links)
        for link in stalled:
            link.stalled.set()
        return stalled

    def hang(self) -> None:
        """Stop answering: stall every open link and every link opened until `unhang()`."""
        self.hanging = True
        self.stall()

    def unhang(self) -> int:
        """Answer again: reset the stalled links (returns how many), let new links flow."""
        self.hanging = False
        stalled = [link for link in self.links if link.stalled.is_set()]
        for link in stalled:
            link.close()
        return len(stalled)

    def refuse(self) -> int:
        """Reset every link, and every new one until `accept()`; returns how many were cut."""
        self.refusing = True
        return self.cut()

    def accept(self) -> None:
        """Forward new links again (after `refuse()`)."""
        self.refusing = False

    async def wait_closed(self, links: set[Link], timeout: float) -> float:
        """Wait until every link in `links` was closed by a peer; returns the seconds taken."""
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(timeout):
            while links & self.links:  # noqa: ASYNC110 - closing is seen by polling
                await asyncio.sleep(0.05)
        return asyncio.get_running_loop().time() - started

    def cut(self) -> int:
        """Abort every open link (both sides). Returns how many were cut."""
        links = list(self.links)
        for link in links:
            link.close()
            for task in link.tasks:
                task.cancel()
        self.links.clear()
        self.cuts += len(links)
        return len(links)

    # ---- forwarding ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        for host, port in self.targets:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.accepted_by[port] += 1
            break
        else:
            writer.transport.abort()
            return
        self.accepted += 1
        link = Link(writer, up_writer)
        if self.hanging:
            link.stalled.set()
        self.links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer)),
            asyncio.create_task(self._pump(link, up_reader, writer)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        link.close()
        self.links.discard(link)

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                if link.stalled.is_set():
                    # half-open: forward nothing, keep both sockets open; still read (and
                    # drop) so a peer that gives up (heartbeat timeout) ends the link
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one direction ended: end the link so the other side notices as well
            link.close()
