"""Opening robust broker connections: retried with jitter, failing with one clear error."""

from __future__ import annotations

from collections.abc import Sequence

from aio_pika.connection import make_url
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ProbableAuthenticationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from framework.errors import BrokerUnavailable
from framework.robust import JitteredRobustConnection
from framework.urls import mask_text, mask_urls

_RETRYABLE = (*CONNECTION_EXCEPTIONS, TimeoutError)


async def open_connection(
    url: str | Sequence[str],
    *,
    name: str,
    attempts: int = 5,
    timeout: float = 5.0,
    heartbeat: int = 15,
) -> JitteredRobustConnection:
    """Connect to `url` (amqp:// or amqps://), or to the first of several node URLs that
    answers, retrying `attempts` times with jittered backoff; each retry starts at the next
    node.

    Once connected, the robust connection reconnects by itself, rotating through the nodes.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise BrokerUnavailable("no broker URL given (--url or AMQP_URL)")
    tried = mask_urls(urls)
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.2, max=3.0),
            reraise=True,
        ):
            with attempt:
                start = attempt.retry_state.attempt_number - 1
                return await _connect(urls, start, name, timeout, heartbeat)
    except ProbableAuthenticationError as exc:
        raise BrokerUnavailable(
            f"cannot connect to {tried}: authentication failed or vhost missing "
            f"({_cause(exc)}); check the user, password and vhost in the URL"
        ) from exc
    except _RETRYABLE as exc:
        raise BrokerUnavailable(
            f"cannot connect to {tried} after {attempts} attempts: {_cause(exc)}; "
            "is RabbitMQ running and is the URL right (--url or AMQP_URL)?"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def _connect(
    urls: list[str], start: int, name: str, timeout: float, heartbeat: int
) -> JitteredRobustConnection:
    connection = JitteredRobustConnection(
        [make_url(u, heartbeat=heartbeat) for u in urls],
        start=start,
        client_properties={"connection_name": name},
        heartbeat=heartbeat,
    )
    try:
        await connection.connect(timeout=timeout)
    except BaseException:
        await connection.close()
        raise
    return connection


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return mask_text(text.splitlines()[0] if text else type(exc).__name__)
