"""structlog configuration: the single global of the framework, with a reset for tests."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, Literal

import structlog

from framework.wire.urls import mask_text

LogFormat = Literal["auto", "json", "console"]

_configured = False

# The delivery being handled (service, queue, message_id, correlation_id, attempt, and the
# trace_id and parent_span_id of its `traceparent`): one context variable set once per
# delivery, merged into every log line by `merge_delivery_context`. Cheaper than binding
# seven structlog contextvars per message.
_delivery: ContextVar[Mapping[str, Any] | None] = ContextVar("framework_delivery", default=None)


def bind_delivery(fields: Mapping[str, Any]) -> Token[Mapping[str, Any] | None]:
    """Attach `fields` to every log line written in this context until `unbind_delivery`."""
    return _delivery.set(fields)


def unbind_delivery(token: Token[Mapping[str, Any] | None]) -> None:
    _delivery.reset(token)


# W3C trace context: version-traceid-parentid-flags (a later version may append fields)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-|$)")
_NO_TRACE: Mapping[str, str] = {}
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def trace_fields(traceparent: str | None) -> Mapping[str, str]:
    """The log fields of a delivery's W3C `traceparent` header: `trace_id` (search a
    tracing backend with it) and `parent_span_id` (the span that sent the message); none
    when the header is absent or not a valid traceparent."""
    if traceparent is None or _TRACEPARENT.match(traceparent) is None:
        return _NO_TRACE
    trace_id, span_id = traceparent[3:35], traceparent[36:52]  # no groups: cheaper
    if traceparent[:2] == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return _NO_TRACE
    return {"trace_id": trace_id, "parent_span_id": span_id}


def merge_delivery_context(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add the current delivery's fields (explicit values win).

    Add it to your own structlog configuration if you do not use `configure_logging`."""
    fields = _delivery.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


def mask_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask passwords of any URL in any string value."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = mask_text(value)
    return event_dict


def configure_logging(
    fmt: LogFormat = "auto",
    level: str = "info",
    *,
    library_level: str = "warning",
    force: bool = False,
) -> None:
    """Configure structlog once: JSON for machines, pretty for a terminal.

    Records of aio-pika/aiormq (stdlib logging) go through the same renderer at
    `library_level`; one-shot CLI commands raise that so only their own error line shows.
    """
    global _configured
    if _configured and not force:
        return
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_delivery_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    _route_stdlib_logging(shared, renderer, library_level)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else _identity,
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def _route_stdlib_logging(shared: list[Any], renderer: Any, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                mask_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])


def _identity(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event_dict


def reset_logging() -> None:
    """Forget the configuration (tests)."""
    global _configured
    structlog.reset_defaults()
    logging.getLogger().handlers = []
    structlog.contextvars.clear_contextvars()
    _configured = False
