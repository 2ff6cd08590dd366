"""What the operator commands share: one lazily opened broker connection, the management API."""

from __future__ import annotations

from types import TracebackType

from framework.ops.management import ManagementApi
from framework.settings import Settings
from framework.wire.connection import open_connection
from framework.wire.robust import JitteredRobustConnection


class BrokerSession:
    """Opens the AMQP connection on first use and closes it on exit (`async with`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: JitteredRobustConnection | None = None

    @property
    def management(self) -> ManagementApi:
        return ManagementApi.for_node(self.settings.amqp_urls[0], self.settings)

    async def connection(self) -> JitteredRobustConnection:
        """The connection, opened now if needed (raises `BrokerUnavailable`)."""
        if self._connection is None:
            s = self.settings
            self._connection = await open_connection(
                s.amqp_urls,
                name="framework-cli",
                attempts=s.connect_attempts,
                timeout=s.connect_timeout,
                heartbeat=s.heartbeat,
                allow_insecure_tls=s.allow_insecure_tls,
            )
        return self._connection

    @property
    def masked_url(self) -> str:
        """Where the session reads from (password hidden): the node of its AMQP connection
        once opened, else the management API (of the first node)."""
        if self._connection is not None:
            return self._connection.masked_url
        return self.management.masked_url

    async def __aenter__(self) -> BrokerSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
