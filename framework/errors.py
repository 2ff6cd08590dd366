"""One exception tree; the type says what happens to the delivery or the publish."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework.publish.send_results import SendResult


MAX_RETRY_LATER = 400 * 24 * 3600.0  # seconds: the longest wait a message can carry


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

    @classmethod
    def no_queue(cls, kind: str, exchange: str, routing_key: str, message_id: str) -> Unroutable:
        """The broker (or the in-memory one) returned the message: no queue is bound."""
        return cls(
            f"no queue is bound for {kind or routing_key!r} "
            f"(exchange {exchange or '(default)'!r}, routing key {routing_key!r}): "
            "start or declare the worker that handles it first",
            routing_key=routing_key,
            message_id=message_id,
        )

    @classmethod
    def no_exchange(
        cls, exchange: str, routing_key: str, message_id: str, detail: str = ""
    ) -> Unroutable:
        """The exchange published to does not exist (`detail`: the broker's own words)."""
        return cls(
            f"exchange {exchange!r} does not exist: declare the topology first "
            f"(bus.declare(WorkerClass))" + (f" ({detail})" if detail else ""),
            routing_key=routing_key,
            message_id=message_id,
        )


class Overloaded(PublishFailed):
    """A destination queue is full (max length, reject-publish), or predicted to make the
    message wait past its deadline (`framework.resilience.load_forecast`): back off and try later.

    `retry_after`: seconds after which the same send (with the same time budget) is
    predicted to fit, when known (None: a full queue says nothing about when)."""

    def __init__(
        self,
        message: str,
        *,
        routing_key: str = "",
        message_id: str = "",
        queue: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, routing_key=routing_key, message_id=message_id)
        self.queue = queue
        self.retry_after = retry_after

    @classmethod
    def queue_full(
        cls, kind: str, message_id: str, routing_key: str, queue: str = ""
    ) -> Overloaded:
        """A destination queue at its max length refused the message (reject-publish)."""
        return cls(
            f"broker refused {kind or 'message'} {message_id} for "
            f"{routing_key!r}: a destination queue is full; back off and retry later",
            routing_key=routing_key,
            message_id=message_id,
            queue=queue,
        )


class MessageRefused(PublishFailed):
    """The broker cannot take this message as it is (its header frame is larger than the
    connection's frame_max, or the broker closed the channel over it twice): resending the
    same message cannot help, so it is not retried."""


class MessageTooLarge(MessageRefused):
    """The body is above the broker's max message size: it was not sent (not retryable)."""


class PublishTimeout(PublishFailed):
    """The broker did not confirm in time (e.g. a memory alarm blocked publishing)."""


class SendManyFailed(PublishFailed):
    """`send_many` could not confirm every message. `results` has one `SendResult` per
    message (key and fate, in order); send `unconfirmed` again with the same keys.

    The raised type also matches the first failure: `SendManyUnroutable` is an
    `Unroutable`, `SendManyOverloaded` an `Overloaded`, `SendManyTimeout` a `PublishTimeout`.
    """

    def __init__(
        self,
        message: str,
        *,
        results: list[SendResult],
        routing_key: str = "",
        message_id: str = "",
    ) -> None:
        super().__init__(message, routing_key=routing_key, message_id=message_id)
        self.results = results

    @property
    def unconfirmed(self) -> list[SendResult]:
        """The messages that failed or were not sent: retry exactly these, same keys."""
        return [r for r in self.results if not r.confirmed]


class SendManyUnroutable(SendManyFailed, Unroutable):
    """`send_many` stopped because a command had no queue bound for it."""


class SendManyOverloaded(SendManyFailed, Overloaded):
    """`send_many` stopped because a destination queue was full."""


class SendManyTimeout(SendManyFailed, PublishTimeout):
    """`send_many` stopped because the broker did not confirm in time."""


class StoreUnavailable(FrameworkError):
    """The idempotency store could not be opened; the message names the (masked) URL."""


class PermanentError(FrameworkError):
    """Raise from a handler when retrying cannot help: the message goes to the DLQ at once."""


class RetryLater(FrameworkError):
    """Raise from a handler to have the message handled again after at least `after`
    seconds, without burning an attempt (a downstream answered 429 with `Retry-After`, a
    resource is not ready yet). The wait is jittered upward only, never shortened.

    Retry-laters are counted against the worker's `retry_later_limit`, apart from
    `max_attempts`; past it the message is dead-lettered as `exhausted`. A message whose
    deadline passes before the wait ends is dead-lettered as `expired` at once.
    """

    def __init__(self, after: float, reason: str = "") -> None:
        if (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not (0 <= after <= MAX_RETRY_LATER)
        ):
            raise ValueError(
                "RetryLater(after=...) takes the seconds to wait, a number >= 0 and at "
                f"most {MAX_RETRY_LATER:g} (400 days); got {after!r}"
            )
        self.after = float(after)
        self.reason = reason
        super().__init__(f"retry after {self.after:g}s" + (f": {reason}" if reason else ""))


class RateLimited(RetryLater):
    """A `RateLimit` had no turn free within its `max_wait`: the handler is retried later
    (no attempt burned) when a turn is due, so consumption slows instead of piling up."""

    def __init__(self, limit: str, after: float, per_second: float) -> None:
        super().__init__(after, f"rate limit {limit!r} ({per_second:g}/s) reached")
        self.limit = limit


class InvalidMessage(PermanentError):
    """The body is not JSON, fails the schema, or has an unknown type."""


class HandlerTimeout(FrameworkError):
    """A handler ran past its worker's `timeout` and was cancelled (a transient failure:
    retried with backoff like any other; its text is the `fw-error` of the copy)."""

    def __init__(self, message: str = "", *, timeout: float | None = None) -> None:
        if not message and timeout is not None:
            message = f"handler ran past timeout={timeout:g}s"
        super().__init__(message)
        self.timeout = timeout


class LeaseLost(FrameworkError):
    """`ctx.heartbeat()` found this delivery's idempotency key held by another worker: its
    lease lapsed (store unreachable past the lease) and a redelivered copy claimed it. The
    handler should stop; raised out of it, this is a transient failure, and the retry finds
    the key busy or done instead of repeating the work."""


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


class UnknownGroup(ConfigurationError):
    """A failure group named by the user has no message in the dead-letter queue."""
