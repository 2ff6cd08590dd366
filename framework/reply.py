"""Replies to requests: a handler's return value (or its terminal failure) sent back.

Encoding and decoding are pure; the worker publishes the reply before acking the request.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import aio_pika
from pydantic import BaseModel

from framework import names
from framework.errors import RemoteError
from framework.messages import Message
from framework.settlement import DeadLetter

M = TypeVar("M", bound=BaseModel)

OK = "ok"
ERROR = "error"


def reply_message(request_id: str, correlation_id: str, result: Any) -> aio_pika.Message:
    """The reply carrying `result` (a pydantic model or any JSON-serialisable value)."""
    if isinstance(result, BaseModel):
        body = result.model_dump_json().encode()
    else:
        body = json.dumps(result).encode()
    type_name = result.type_name if isinstance(result, Message) else "json"
    return _message(request_id, correlation_id, body, type_name, OK)


def error_reply_message(request_id: str, correlation_id: str,
                        settlement: DeadLetter) -> aio_pika.Message:
    """The reply telling the requester its request failed terminally, and why."""
    body = json.dumps({"reason": settlement.reason.value, "error": settlement.error}).encode()
    return _message(request_id, correlation_id, body, "error", ERROR)


def _message(request_id: str, correlation_id: str, body: bytes, type_name: str,
             status: str) -> aio_pika.Message:
    return aio_pika.Message(
        body=body,
        message_id=f"reply-{request_id}",
        correlation_id=correlation_id,
        type=type_name,
        content_type=names.CONTENT_TYPE,
        headers={names.IN_REPLY_TO: request_id, names.REPLY_STATUS: status},
    )


def decode_reply(body: bytes, status: str, reply_type: type[M] | None) -> Any:
    """The value of a reply, or `RemoteError` for an error reply."""
    if status == ERROR:
        data = json.loads(body)
        raise RemoteError(str(data.get("reason", "unknown")), str(data.get("error", "")))
    if reply_type is not None:
        return reply_type.model_validate_json(body)
    return json.loads(body)
