"""One exception tree; the type says what happens to the delivery or the publish."""

from __future__ import annotations


class FrameworkError(Exception):
    """Root of every error the framework raises."""


class ConfigurationError(FrameworkError):
    """A user mistake in code or settings; the message says what to change."""


class BrokerUnavailable(FrameworkError):
    """The broker could not be reached; the message names the (masked) URL and the cause."""


class PublishFailed(FrameworkError):
    """A publish was not confirmed by the broker; the message may not have been stored."""

    def __init__(self, message: str, *, routing_key: str = "", message_id: str = "") -> None:
        super().__init__(message)
        self.routing_key = routing_key
        self.message_id = message_id


class Unroutable(PublishFailed):
    """No queue is bound for this message type: nobody would ever receive it."""


class Overloaded(PublishFailed):
    """A destination queue is full (max length, reject-publish): back off and try later."""

    def __init__(self, message: str, *, routing_key: str = "", message_id: str = "",
                 queue: str = "") -> None:
        super().__init__(message, routing_key=routing_key, message_id=message_id)
        self.queue = queue


class MessageTooLarge(PublishFailed):
    """The body is above the broker's max message size: it was not sent (not retryable)."""


class PublishTimeout(PublishFailed):
    """The broker did not confirm in time (e.g. a memory alarm blocked publishing)."""


class StoreUnavailable(FrameworkError):
    """The idempotency store could not be opened; the message names the (masked) URL."""


class PermanentError(FrameworkError):
    """Raise from a handler when retrying cannot help: the message goes to the DLQ at once."""


class InvalidMessage(PermanentError):
    """The body is not JSON, fails the schema, or has an unknown type."""


class HandlerTimeout(FrameworkError):
    """A handler ran past its worker's `timeout` (or the message deadline) and was cancelled."""



class RequestTimeout(FrameworkError):
    """No reply arrived within the request's timeout; a late reply is discarded."""


class RemoteError(FrameworkError):
    """The handler of a request failed terminally; `reason` is the DLQ reason."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(f"request failed ({reason}): {error}")
        self.reason = reason
        self.error = error


class UnknownQueue(ConfigurationError):
    """A queue named by the user does not exist on the broker."""
