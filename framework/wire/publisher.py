"""Confirmed, time-bounded publishing on a channel of its own.

Every publish waits for the broker's confirm. A broker nack means a full queue
(`Overloaded`), a return means nobody is bound (`Unroutable`), no answer in time is a
`PublishTimeout`. A publish cut by a reconnect is retried within the same time bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import cast

import aio_pika
import aiormq
import pamqp.frame
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    PublishError,
)
from aiormq.exceptions import ConnectionFrameError
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from tenacity import retry_if_exception_type

from framework.errors import MessageRefused, Overloaded, PublishTimeout, Unroutable
from framework.resilience.retrying import PUBLISH

# Headers whose rough size (an upper bound) stays below this fit in the header frame of any
# connection with frame_max >= 8 KiB, whatever the other properties (RabbitMQ's default is
# 128 KiB): only larger ones are measured exactly before they are sent.
_SURELY_FITS = 2048


class _ConnectionInterrupted(Exception):
    """A publish failed because the connection or channel went away; safe to retry."""


class _ClosedOverMessage(_ConnectionInterrupted):
    """The broker closed the channel (406) or connection (501) while this publish was in
    flight: maybe over this message, maybe over a neighbour's. Retried once; a second time
    it is this message's fault (`MessageRefused`)."""


#: pauses (jittered) before the tries of a nacked publish on a fresh channel, which happen
#: only within NACK_RETRY_WINDOW seconds of a reconnect: elsewhere a nack is a full queue and
#: `Overloaded` must reach the sender at once (load shedding)
NACK_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
NACK_RETRY_WINDOW = 30.0


class Publisher:
    """Publishes AMQP messages and returns only once the broker confirmed them.

    Publishes go straight to the aiormq channel under aio-pika's robust channel (which
    reopens it after a reconnect or a channel error): no `aio_pika.Message`, no exchange
    object, and no wait for the socket write, only for the confirm. Many publishes can
    be in flight at once (`Bus.send_many`), so confirms are pipelined.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        timeout: float,
        *,
        prepare: Callable[[AbstractChannel], Awaitable[None]] | None = None,
    ) -> None:
        """`prepare` runs on each channel the publisher opens, before its first publish
        (request/reply consumes direct reply-to there: the broker wants both on one channel)."""
        self._connection = connection
        self._timeout = timeout
        self._prepare = prepare
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.Channel | None = None
        self._open_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()  # nacked channels, closed when done

    async def _raw_channel(self) -> aiormq.Channel:
        raw = self._raw
        if raw is not None and not raw.is_closed:
            return raw  # the hot path: no lock, no await
        async with self._open_lock:
            if self._channel is None or self._channel.is_closed:
                # on_return_raises: an unroutable mandatory publish raises instead of
                # being silently "confirmed".
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                if self._prepare is not None:
                    try:
                        await self._prepare(channel)
                    except BaseException:
                        with contextlib.suppress(Exception):  # the prepare error is the news
                            await channel.close()
                        raise
                self._channel, self._raw = channel, None
            if self._raw is None or self._raw.is_closed:
                self._raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            return self._raw

    async def publish(
        self,
        message: aio_pika.Message,
        exchange: str,
        routing_key: str,
        *,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Publish and wait for the confirm, retrying connection loss within `timeout`."""
        await self.publish_properties(
            message.body,
            message.properties,
            exchange,
            routing_key,
            mandatory=mandatory,
            timeout=timeout,
        )

    async def publish_properties(
        self,
        body: bytes,
        properties: Basic.Properties,
        exchange: str,
        routing_key: str,
        *,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        """`publish` for a body and its AMQP properties (the hot path of `Bus.send`).

        A nacked publish retires its channel (the next publish opens a fresh one), and
        within `NACK_RETRY_WINDOW` s of a reconnect it is tried again on a fresh channel, a
        few times within about four seconds and within the same bound: after a failover
        RabbitMQ 3.10 keeps nacking every publish on a channel whose quorum queue lost its
        leader's node (kill -9) until that channel is reopened and the new leader elected.
        Otherwise a nack is a full queue: `Overloaded` at once."""
        if not properties.message_id:
            raise ValueError("every published message needs a message_id")
        if properties.headers and _rough_size(properties.headers) > _SURELY_FITS:
            await self._refuse_oversized(body, properties, routing_key)
        bound = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        try:
            await self._publish_bounded(body, properties, exchange, routing_key, mandatory, bound)
            return
        except Overloaded:
            if (
                not self._settling_after_reconnect()
                or NACK_RETRY_DELAYS[0] >= deadline - loop.time()
            ):
                raise
        for pause in NACK_RETRY_DELAYS:  # on a fresh channel each time (see _retire_channel)
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            remaining = deadline - loop.time()
            try:
                await self._publish_bounded(
                    body, properties, exchange, routing_key, mandatory, max(remaining, 0.01)
                )
                return
            except Overloaded:
                if pause is NACK_RETRY_DELAYS[-1] or remaining <= pause:
                    raise

    async def _publish_bounded(
        self,
        body: bytes,
        properties: Basic.Properties,
        exchange: str,
        routing_key: str,
        mandatory: bool,
        bound: float,
    ) -> None:
        raw = self._raw
        refusals = 0
        try:
            if raw is not None and not raw.is_closed:
                try:  # the common case: an open channel, one try, aiormq's own time bound
                    await self._publish_once(
                        raw, body, properties, exchange, routing_key, mandatory, bound
                    )
                    return
                except _ConnectionInterrupted as exc:
                    refusals = int(isinstance(exc, _ClosedOverMessage))
            async with asyncio.timeout(bound):
                policy = replace(PUBLISH, within=bound)
                async for attempt in policy.retrying(
                    retry_if_exception_type(_ConnectionInterrupted)
                ):
                    with attempt:
                        try:
                            await self._publish_once(
                                None, body, properties, exchange, routing_key, mandatory, None
                            )
                        except _ClosedOverMessage as exc:
                            refusals += 1
                            if refusals >= 2:
                                raise _refused(properties, routing_key, str(exc)) from exc
                            raise
        except TimeoutError as exc:
            raise PublishTimeout(
                f"broker did not confirm {properties.message_type or 'message'} "
                f"{properties.message_id} to {exchange or '(default)'}/{routing_key} within "
                f"{bound:g}s (connection down or broker blocked by a resource alarm?)",
                routing_key=routing_key,
                message_id=properties.message_id or "",
            ) from exc
        except _ConnectionInterrupted as exc:
            raise PublishTimeout(
                f"could not publish {properties.message_id} within {bound:g}s: {exc}",
                routing_key=routing_key,
                message_id=properties.message_id or "",
            ) from exc

    async def _publish_once(
        self,
        channel: aiormq.Channel | None,
        body: bytes,
        properties: Basic.Properties,
        exchange: str,
        routing_key: str,
        mandatory: bool,
        timeout: float | None,
    ) -> None:
        """One publish and its confirm; `channel` None: (re)open it first."""
        message_id = properties.message_id or ""
        kind = properties.message_type or "message"
        try:
            if channel is None:
                channel = await self._raw_channel()
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=timeout,
                wait=False,
            )
        except PublishError as exc:
            raise Unroutable.no_queue(
                properties.message_type or "", exchange, routing_key, message_id
            ) from exc
        except ChannelNotFoundEntity as exc:
            raise Unroutable.no_exchange(exchange, routing_key, message_id, str(exc)) from exc
        except DeliveryError as exc:
            self._retire_channel(channel)
            queue = routing_key if exchange == "" else ""
            raise Overloaded.queue_full(kind, message_id, routing_key, queue) from exc
        except (ChannelPreconditionFailed, ConnectionFrameError) as exc:
            raise _ClosedOverMessage(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError:
            raise  # aiormq's time bound ran out (and TimeoutError is an OSError: not a cut)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # aiormq cancels pending confirms when the connection drops.
            raise _ConnectionInterrupted("connection lost while waiting for confirm") from exc
        except CONNECTION_EXCEPTIONS as exc:
            raise _ConnectionInterrupted(f"{type(exc).__name__}: {exc}") from exc

    async def _refuse_oversized(
        self, body: bytes, properties: Basic.Properties, routing_key: str
    ) -> None:
        """Raise `MessageRefused` if the header frame would exceed the connection's
        frame_max: the broker would close the whole connection over it (501), and a resend
        after the reconnect would close it again, forever."""
        raw = await self._raw_channel()
        frame_max = int(raw.connection.connection_tune.frame_max or 0)
        if not frame_max:
            return
        size = len(pamqp.frame.marshal(ContentHeader(0, len(body), properties), 1))
        if size > frame_max:
            raise _refused(
                properties,
                routing_key,
                f"its header frame is {size} bytes, over the connection's "
                f"frame_max of {frame_max}: make the headers smaller",
            )

    def _settling_after_reconnect(self) -> bool:
        """True within `NACK_RETRY_WINDOW` s of a reconnect (a failover to another node)."""
        at = getattr(self._connection, "reconnected_at", None)
        return at is not None and time.monotonic() - at < NACK_RETRY_WINDOW

    def _retire_channel(self, raw: aiormq.Channel | None) -> None:
        """Open a fresh channel for the next publish; close `raw` once the publishes still
        waiting for its confirms are answered (bounded by the publish timeout)."""
        if raw is None or raw is not self._raw:
            return  # already retired by another nacked publish
        channel, self._channel, self._raw = self._channel, None, None
        task = asyncio.get_running_loop().create_task(self._close_when_confirmed(channel, raw))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_when_confirmed(
        self, channel: AbstractChannel | None, raw: aiormq.Channel
    ) -> None:
        pending = [f for f in raw.confirmations.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._timeout)
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # already gone with its connection
                await channel.close()

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


def _rough_size(headers: Mapping[str, object]) -> int:
    """An upper bound of the encoded size of flat headers (nested ones: measure exactly)."""
    size = 0
    for key, value in headers.items():
        if isinstance(value, str):
            size += len(key) + 6 + 4 * len(value)
        elif isinstance(value, int | float) or value is None:
            size += len(key) + 10
        else:
            return _SURELY_FITS + 1
    return size


def _refused(properties: Basic.Properties, routing_key: str, why: str) -> MessageRefused:
    return MessageRefused(
        f"broker cannot take {properties.message_type or 'message'} {properties.message_id} "
        f"for {routing_key!r}: {why}; resending it cannot help",
        routing_key=routing_key,
        message_id=properties.message_id or "",
    )
