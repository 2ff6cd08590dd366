"""Every name the framework gives a broker object or header, in one place."""

from __future__ import annotations

COMMANDS_EXCHANGE = "fw.commands"
EVENTS_EXCHANGE = "fw.events"
# workers' load reports (framework.resilience.load_status), followed by senders that shed
# by forecast
LOAD_EXCHANGE = "fw.load"

CONTENT_TYPE = "application/json"

# Our own headers stay under a non-`x-` prefix: RabbitMQ 4.x drops client-set `x-` headers.
ATTEMPT = "fw-attempt"
CAUSATION_ID = "fw-causation-id"
DEADLINE = "fw-deadline"
REASON = "fw-reason"
ERROR = "fw-error"
ATTEMPTS = "fw-attempts"
ORIGINAL_QUEUE = "fw-queue"
FAILED_AT = "fw-failed-at"
DEFERRALS = "fw-deferrals"  # deferrals in a row (store down, key busy): drives their backoff
RETRY_LATER = "fw-retry-later"  # times the handler raised RetryLater (its own budget)
# epoch ms (int, like fw-deadline) before which the message must not be handled: a wait
# longer than the largest delay tier travels in hops, and a copy arriving early waits again
NOT_BEFORE = "fw-not-before"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"  # W3C trace context's vendor part: read and written with OpenTelemetry
# on a retry or DLQ copy, with OpenTelemetry on: the `traceparent` of the attempt it comes
# from (its `process` span), so the next attempt's span links to it
PREVIOUS_ATTEMPT = "fw-previous-attempt"
# scheduled sends (framework.publish.scheduling) and RetryLater hops: "do not handle
# before", in epoch milliseconds (an int: a float header would travel as a 32-bit float);
# then the countdown's stages
NOT_BEFORE = "fw-not-before"
SCHEDULE_HEADER_PREFIX = "fw-schedule-"
SCHEDULE_EXCHANGE = "fw.schedule.0"  # the countdown's entry (its stage 0)
SCHEDULE_QUEUE_PREFIX = "fw.schedule.wait."
SCHEDULE_ROW = "fw.schedule"  # `framework queues`: the countdown's queues as one row
KEY_ORIGIN = "fw-key-origin"  # "content": message_id derived from the body (none was sent)
IN_REPLY_TO = "fw-in-reply-to"
REPLY_STATUS = "fw-reply-status"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
X_DEATH = "x-death"
X_DELIVERY_COUNT = "x-delivery-count"  # set by quorum queues on each delivery (not ours)


def dlq_name(queue: str) -> str:
    """The dead-letter queue that belongs to `queue`."""
    return f"{queue}.dlq"


def moves_exchange(queue: str) -> str:
    """The direct exchange of `queue`'s own moves: bound to its DLQ and delay queues, each by
    its queue name. Moving a message there needs write access on this exchange only (the
    service's own), not on the default exchange, which would reach every queue."""
    return f"{queue}.moves"


def retry_queue_name(queue: str, delay_ms: int) -> str:
    """The delay queue of `queue` whose messages wait at most `delay_ms`."""
    return f"{queue}.retry.{format_delay(delay_ms)}"


def schedule_exchange(stage: int) -> str:
    """The headers exchange of stage `stage` of the scheduled-send countdown."""
    return f"fw.schedule.{stage}"


def schedule_queue(wait_ms: int) -> str:
    """The countdown queue that holds a scheduled command for `wait_ms`."""
    return f"{SCHEDULE_QUEUE_PREFIX}{format_delay(wait_ms)}"


def format_delay(delay_ms: int) -> str:
    """Render a tier delay compactly and stably: 500ms, 1s, 2500ms, 64s."""
    if delay_ms >= 1000 and delay_ms % 1000 == 0:
        return f"{delay_ms // 1000}s"
    return f"{delay_ms}ms"


def is_companion_queue(name: str) -> bool:
    """True for retry and dead-letter queues, which belong to a worker queue."""
    return name.endswith(".dlq") or ".retry." in name


def owner_queue(name: str) -> str:
    """The worker queue a companion queue belongs to (itself for a worker queue)."""
    if name.endswith(".dlq"):
        return name[: -len(".dlq")]
    if ".retry." in name:
        return name.rsplit(".retry.", 1)[0]
    return name


# Order per key (framework.consume.ordering): set by the sender from the field the message class
# names in `ordered_by`; the bucket routes the message to its partition queue.
ORDER_KEY = "fw-order-key"
ORDER_BUCKET = "fw-order-bucket"


def partition_queue_name(queue: str, partition: int) -> str:
    """Partition `partition` of an ordered worker's queue: `orders.p3`."""
    return f"{queue}.p{partition}"


def partitions_exchange(queue: str) -> str:
    """The headers exchange of an ordered worker: routes by `fw-order-bucket` to the
    partition queues; the commands/events exchanges and `Q.moves` (routing key `Q`) feed it."""
    return f"{queue}.partitions"
