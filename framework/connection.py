"""Opening robust broker connections: retried with jitter, failing with one clear error."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ProbableAuthenticationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from framework.errors import BrokerUnavailable
from framework.robust import JitteredRobustConnection
from framework.urls import mask_text, mask_url
from framework.wire_guard import install as install_wire_guard

_RETRYABLE = (*CONNECTION_EXCEPTIONS, TimeoutError)


async def open_connection(
    url: str,
    *,
    name: str,
    attempts: int = 5,
    timeout: float = 5.0,
    heartbeat: int = 15,
) -> AbstractRobustConnection:
    """Connect to `url` (amqp:// or amqps://), retrying `attempts` times with jittered backoff.

    Once connected, aio-pika's robust connection reconnects by itself. Header tables on
    it are decoded depth-bounded (`wire_guard`): a poisoned frame cannot kill it.
    """
    install_wire_guard()
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.2, max=3.0),
            reraise=True,
        ):
            with attempt:
                return await aio_pika.connect_robust(
                    url,
                    timeout=timeout,
                    heartbeat=heartbeat,
                    client_properties={"connection_name": name},
                    connection_class=JitteredRobustConnection,
                )
    except ProbableAuthenticationError as exc:
        raise BrokerUnavailable(
            f"cannot connect to {mask_url(url)}: authentication failed or vhost missing "
            f"({_cause(exc)}); check the user, password and vhost in the URL"
        ) from exc
    except _RETRYABLE as exc:
        raise BrokerUnavailable(
            f"cannot connect to {mask_url(url)} after {attempts} attempts: {_cause(exc)}; "
            "is RabbitMQ running and is the URL right (--url or AMQP_URL)?"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return mask_text(text.splitlines()[0] if text else type(exc).__name__)
