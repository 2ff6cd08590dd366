"""Replies to requests: a handler's return value (or its terminal failure) sent back.

Encoding and decoding are pure; the worker publishes the reply before acking the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel

from framework.consume.decisions import DeadLetter
from framework.errors import RemoteError, RequestTimeout, Unroutable
from framework.messages import Message
from framework.wire import names
from framework.wire.envelope import Envelope

M = TypeVar("M", bound=BaseModel)

_log = structlog.get_logger("framework.requests")

OK = "ok"
ERROR = "error"


def may_reply_to(reply_to: str) -> bool:
    """Whether a worker may answer to `reply_to`: only a direct reply-to name.

    The broker gives each requester's channel a name `amq.rabbitmq.reply-to.<token>` that
    only that channel consumes; any other name (an ordinary queue) would let whoever may
    publish to a worker's queue make the worker write into another queue with its own
    credentials, so it is refused.
    """
    prefix = f"{names.DIRECT_REPLY_TO}."
    return reply_to.startswith(prefix) and len(reply_to) > len(prefix)


def reply_message(request_id: str, correlation_id: str, result: Any) -> Envelope:
    """The reply carrying `result` (a pydantic model or any JSON-serialisable value)."""
    if isinstance(result, BaseModel):
        body = result.model_dump_json().encode()
    else:
        body = json.dumps(result).encode()
    type_name = result.type_name if isinstance(result, Message) else "json"
    return _message(request_id, correlation_id, body, type_name, OK)


def error_reply_message(request_id: str, correlation_id: str, settlement: DeadLetter) -> Envelope:
    """The reply telling the requester its request failed terminally, and why."""
    body = json.dumps({"reason": settlement.reason.value, "error": settlement.error}).encode()
    return _message(request_id, correlation_id, body, "error", ERROR)


def _message(
    request_id: str, correlation_id: str, body: bytes, type_name: str, status: str
) -> Envelope:
    """A reply is an envelope like any message: one encoder, one publish path."""
    return Envelope(
        message_id=f"reply-{request_id}",
        type=type_name,
        body=body,
        correlation_id=correlation_id,
        headers={names.IN_REPLY_TO: request_id, names.REPLY_STATUS: status},
    )


def unroutable_request(type_name: str, key: str) -> Unroutable:
    """The error of a request no queue handles (the same on both buses)."""
    return Unroutable(
        f"no queue handles {type_name!r}: start its worker", routing_key=type_name, message_id=key
    )


def request_timeout(type_name: str, key: str, timeout: float) -> RequestTimeout:
    """The error of a request whose reply did not come within `timeout` seconds."""
    return RequestTimeout(f"no reply to {type_name} {key} within {timeout:g}s")


def decode_reply(body: bytes, status: str, reply_type: type[M] | None) -> Any:
    """The value of a reply, or `RemoteError` for an error reply."""
    if status == ERROR:
        data = json.loads(body)
        raise RemoteError(str(data.get("reason", "unknown")), str(data.get("error", "")))
    if reply_type is not None:
        return reply_type.model_validate_json(body)
    return json.loads(body)


class PendingReplies:
    """Requests waiting for their reply, matched by `fw-in-reply-to` (the request's key).

    One piece for both buses: a reply nobody waits for any more (it came after the
    timeout) is logged and dropped, never an error.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[bytes, str]]] = {}

    def expect(self, request_id: str) -> asyncio.Future[tuple[bytes, str]]:
        """Register a request; its future gets (body, status) when the reply arrives."""
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """The request finished (answered, timed out or failed): stop waiting for it."""
        self._waiting.pop(request_id, None)

    def deliver(self, headers: Mapping[str, Any], body: bytes) -> None:
        """Hand an incoming reply to its request, or drop it as late."""
        request_id = headers.get(names.IN_REPLY_TO)
        future = self._waiting.get(str(request_id)) if request_id is not None else None
        if future is None or future.done():
            _log.info("request.late_reply_discarded", request_id=request_id)
            return
        future.set_result((body, str(headers.get(names.REPLY_STATUS, OK))))

    def cancel_all(self) -> None:
        """Closing: every waiting request is cancelled."""
        for future in self._waiting.values():
            future.cancel()
