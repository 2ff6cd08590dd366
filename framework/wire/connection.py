"""Opening robust broker connections: retried with jitter, failing with one clear error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import aio_pika
import structlog
from aio_pika.connection import make_url
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ProbableAuthenticationError
from tenacity import retry_if_exception_type

from framework.errors import BrokerUnavailable, ConfigurationError
from framework.resilience import retrying
from framework.wire.guard import install as install_wire_guard
from framework.wire.robust import JitteredRobustConnection
from framework.wire.urls import (
    broker_url_problem,
    disables_tls_verification,
    mask_text,
    mask_url,
    mask_urls,
)

_log = structlog.get_logger("framework.connection")

_RETRYABLE = (*CONNECTION_EXCEPTIONS, TimeoutError)


async def open_connection(
    url: str | Sequence[str],
    *,
    name: str,
    attempts: int = retrying.CONNECT.attempts or 5,
    timeout: float = 5.0,
    heartbeat: int = 15,
    allow_insecure_tls: bool = False,
) -> JitteredRobustConnection:
    """Connect to `url` (amqp:// or amqps://), or to the first of several node URLs that
    answers, retrying `attempts` times with jittered backoff; each retry starts at the next
    node.

    Once connected, the robust connection reconnects by itself, rotating through the nodes.
    Header tables on it are decoded depth-bounded (`wire_guard`): a poisoned frame cannot
    kill it. A URL that cannot be parsed, or an amqps URL with `no_verify_ssl` without
    `allow_insecure_tls`, is a `ConfigurationError` before anything is sent.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise BrokerUnavailable("no broker URL given (--url or AMQP_URL)")
    for each in urls:
        check_url(each, allow_insecure_tls=allow_insecure_tls)
    install_wire_guard()
    tried = mask_urls(urls)
    try:
        policy = replace(retrying.CONNECT, attempts=attempts)
        async for attempt in policy.retrying(retry_if_exception_type(_RETRYABLE)):
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


async def broker_answers(url: str, timeout: float = 3.0) -> bool:
    """Can a plain AMQP connection to `url` be opened (and closed) right now? No retries:
    for choosing a broker (demo, tests), not for using one."""
    try:
        connection = await aio_pika.connect(url, timeout=timeout)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


def check_url(url: str, *, allow_insecure_tls: bool = False) -> None:
    """Refuse a broken broker URL, and one that turns TLS verification off unless allowed
    (then warn: anyone between this process and the broker can read and change traffic)."""
    problem = broker_url_problem(url)
    if problem is not None:
        raise ConfigurationError(problem)
    if not disables_tls_verification(url):
        return
    if not allow_insecure_tls:
        raise ConfigurationError(
            f"{mask_url(url)} turns TLS certificate verification off (no_verify_ssl): remove "
            "it and name the broker's CA with ?cafile=/path/ca.pem, or set "
            "FRAMEWORK_ALLOW_INSECURE_TLS=true to accept a man-in-the-middle risk "
            "(development only)"
        )
    _log.warning(
        "broker.tls_verification_off",
        url=mask_url(url),
        hint="no_verify_ssl: the broker's certificate is not checked; anyone on the path can "
        "impersonate it. Use ?cafile=... in production",
    )


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return mask_text(text.splitlines()[0] if text else type(exc).__name__)
