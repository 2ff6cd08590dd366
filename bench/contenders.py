"""The contenders: one class each, same small interface, each written the way its API is meant
to be used.

Every handler validates the JSON body into a pydantic model and calls `on_message(model)`;
every message is acked only after that. Every publish is persistent and confirmed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aio_pika
import aiormq
from aiormq.abc import DeliveredMessage

from bench.common import (
    ACK_EVERY,
    PREFETCH,
    PUBLISH_WINDOW,
    QUEUE_ARGS,
    REFERENCE_WINDOW,
    OrderFields,
    type_name,
)

OnMessage = Callable[[Any], None]


class Contender:
    """A client library driven through the bench workloads."""

    name: ClassVar[str]
    uvloop: ClassVar[bool] = False
    description: ClassVar[str] = ""

    async def open(self, url: str) -> None:
        raise NotImplementedError

    async def declare(self, queue: str) -> None:
        raise NotImplementedError

    def queues(self, queue: str) -> list[str]:
        """Every queue declaring `queue` created (to delete afterwards)."""
        return [queue]

    async def publish_many(self, queue: str, orders: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def publish_one(self, queue: str, order: dict[str, Any]) -> None:
        raise NotImplementedError

    async def start_consumer(self, queue: str, on_message: OnMessage) -> None:
        raise NotImplementedError

    async def stop_consumer(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


async def _in_windows(
    orders: list[dict[str, Any]],
    publish: Callable[[dict[str, Any]], Awaitable[Any]],
    window: int = PUBLISH_WINDOW,
) -> None:
    """Publisher confirms in windows: start `window` publishes, wait for all, repeat.

    Each window's messages are built when it starts (as the tuned reference builds each
    message when it sends it), not all N up front."""
    for start in range(0, len(orders), window):
        await asyncio.gather(*(publish(o) for o in orders[start : start + window]))


# ---- raw aio-pika, used plainly ---------------------------------------------------------


class AioPika(Contender):
    name = "aio-pika"
    description = (
        "aio-pika 'by the book': robust connection, confirms awaited in windows of "
        f"{PUBLISH_WINDOW}, `await message.ack()` after each handler"
    )

    async def open(self, url: str) -> None:
        self.conn = await aio_pika.connect_robust(url)
        self.pub_channel = await self.conn.channel(publisher_confirms=True)
        self.consume_channel: aio_pika.abc.AbstractChannel | None = None

    async def declare(self, queue: str) -> None:
        await self.pub_channel.declare_queue(queue, durable=True, arguments=dict(QUEUE_ARGS))

    def _message(self, order: dict[str, Any]) -> aio_pika.Message:
        return aio_pika.Message(
            OrderFields(**order).model_dump_json().encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=uuid.uuid4().hex,
        )

    async def publish_many(self, queue: str, orders: list[dict[str, Any]]) -> None:
        exchange = self.pub_channel.default_exchange
        await _in_windows(orders, lambda o: exchange.publish(self._message(o), queue))

    async def publish_one(self, queue: str, order: dict[str, Any]) -> None:
        await self.pub_channel.default_exchange.publish(self._message(order), queue)

    async def start_consumer(self, queue: str, on_message: OnMessage) -> None:
        self.consume_channel = await self.conn.channel()
        await self.consume_channel.set_qos(prefetch_count=PREFETCH)
        self.queue = await self.consume_channel.get_queue(queue, ensure=False)

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            on_message(OrderFields.model_validate_json(message.body))
            await message.ack()

        self.tag = await self.queue.consume(handle)

    async def stop_consumer(self) -> None:
        await self.queue.cancel(self.tag)

    async def close(self) -> None:
        await self.conn.close()


class AioPikaUvloop(AioPika):
    name = "aio-pika+uvloop"
    uvloop = True
    description = "the same code as aio-pika, on uvloop"


# ---- the tuned raw reference --------------------------------------------------------------


class DeferredAcker:
    """Acks the contiguous prefix of handled delivery tags with one `multiple=True` ack, as
    rarely as the guarantees allow.

    A tag is acked only once it and every tag before it were handled. The flush is deferred
    while deliveries keep completing: it runs once `every` handled tags are pending, or once
    two loop ticks in a row saw no delivery complete (the batch that was ready is done). On a
    quorum queue every ack frame is a consensus command, so fewer frames is what makes a raw
    consumer fast; `frames` counts the ack frames sent (the bench smoke test checks it).
    """

    def __init__(self, channel: aiormq.abc.AbstractChannel, every: int = ACK_EVERY) -> None:
        self.channel = channel
        self.every = every
        self.acked = 0  # every tag <= acked is acked
        self.prefix = 0  # every tag <= prefix is handled
        self.handled: set[int] = set()
        self.completions = 0  # handled deliveries so far (the quiet-tick test reads it)
        self.seen = 0  # completions at the last tick
        self.quiet_ticks = 0
        self.scheduled = False
        self.frames = 0
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()

    def done(self, tag: int) -> None:
        if tag == self.prefix + 1:
            self.prefix = tag
            handled = self.handled
            while self.prefix + 1 in handled:
                self.prefix += 1
                handled.discard(self.prefix)
        else:
            self.handled.add(tag)
        self.completions += 1
        if self.prefix - self.acked >= self.every:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            self.seen = self.completions
            self.quiet_ticks = 0
            self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        if self.completions != self.seen:  # still completing: defer
            self.seen = self.completions
            self.quiet_ticks = 0
        else:
            self.quiet_ticks += 1
            if self.quiet_ticks >= 2:
                self.scheduled = False
                self.flush()
                return
        self.loop.call_soon(self._tick)

    def flush(self) -> None:
        if self.prefix > self.acked:
            self.acked = self.prefix
            self.frames += 1
            task = self.loop.create_task(
                self.channel.basic_ack(self.prefix, multiple=True, wait=False)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


class Tuned(Contender):
    name = "tuned raw"
    uvloop = True
    description = (
        "uvloop + aiormq directly: a sliding window of "
        f"{REFERENCE_WINDOW} unconfirmed publishes (properties built once, no wait "
        "for the socket drain); acks coalesced with multiple=True over the contiguous "
        f"prefix of handled tags, deferred while deliveries keep completing (every "
        f"{ACK_EVERY} handled tags or after two quiet loop ticks), each message acked "
        "only after its handler"
    )

    async def open(self, url: str) -> None:
        self.conn = await aiormq.connect(url)
        self.pub_channel = await self.conn.channel(publisher_confirms=True)
        self.ack_frames = 0

    async def declare(self, queue: str) -> None:
        await self.pub_channel.queue_declare(queue, durable=True, arguments=dict(QUEUE_ARGS))

    async def publish_many(self, queue: str, orders: list[dict[str, Any]]) -> None:
        # The window is a free list of properties objects built once: one is taken per
        # publish (only its message id changes) and comes back when that publish is
        # confirmed, so an object is never changed while its frames may still be marshalled.
        free = [
            aiormq.spec.Basic.Properties(delivery_mode=2, content_type="application/json")
            for _ in range(REFERENCE_WINDOW)
        ]
        returned = asyncio.Event()
        pending: set[asyncio.Future[Any]] = set()
        errors: list[BaseException] = []
        publish = self.pub_channel.basic_publish

        def confirmed(fut: asyncio.Future[Any], props: Any) -> None:
            pending.discard(fut)
            free.append(props)
            returned.set()
            if not fut.cancelled() and fut.exception() is not None:
                errors.append(fut.exception())  # type: ignore[arg-type]

        for order in orders:
            while not free:
                returned.clear()
                await returned.wait()
            props = free.pop()
            props.message_id = os.urandom(16).hex()
            body = OrderFields(**order).model_dump_json().encode()
            fut = asyncio.ensure_future(
                publish(body, routing_key=queue, properties=props, wait=False)
            )
            pending.add(fut)
            fut.add_done_callback(functools.partial(confirmed, props=props))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if errors:
            raise errors[0]

    async def publish_one(self, queue: str, order: dict[str, Any]) -> None:
        props = aiormq.spec.Basic.Properties(
            delivery_mode=2,
            content_type="application/json",
            message_id=uuid.uuid4().hex,
        )
        body = OrderFields(**order).model_dump_json().encode()
        await self.pub_channel.basic_publish(body, routing_key=queue, properties=props, wait=False)

    async def start_consumer(self, queue: str, on_message: OnMessage) -> None:
        self.consume_channel = await self.conn.channel(publisher_confirms=False)
        await self.consume_channel.basic_qos(prefetch_count=PREFETCH)
        acker = DeferredAcker(self.consume_channel)
        self.acker = acker
        validate = OrderFields.model_validate_json

        async def handle(message: DeliveredMessage) -> None:
            on_message(validate(message.body))
            acker.done(message.delivery_tag)  # type: ignore[arg-type]

        ok = await self.consume_channel.basic_consume(queue, handle, no_ack=False)
        self.tag = ok.consumer_tag

    async def stop_consumer(self) -> None:
        await self.consume_channel.basic_cancel(self.tag)
        self.acker.flush()
        if self.acker.tasks:
            await asyncio.gather(*self.acker.tasks)
        self.ack_frames = self.acker.frames

    async def close(self) -> None:
        await self.conn.close()


# ---- the framework --------------------------------------------------------------------------

_framework_classes: dict[str, Any] = {}


def _framework_types(queue: str) -> tuple[Any, Any]:
    """The Command and the Worker subclass for one bench queue (lazy framework import).

    Each queue gets its own message type, so commands are routed to that queue only.
    """
    if queue not in _framework_classes:
        from framework import Command, Context, Worker

        class BenchOrder(Command, OrderFields):
            type_name = type_name(queue)

        async def handle(self: Any, msg: Any, ctx: Any) -> None:
            self.on_message(msg)

        # resolvable annotations: the framework reads the consumed type from them
        handle.__annotations__ = {"msg": BenchOrder, "ctx": Context, "return": None}
        worker = type(
            "BenchWorker",
            (Worker,),
            {
                "queue": queue,
                "prefetch": PREFETCH,
                "max_attempts": 5,
                "timeout": 30.0,
                "handle": handle,
            },
        )
        _framework_classes[queue] = (BenchOrder, worker)
    return _framework_classes[queue]  # type: ignore[no-any-return]


def _outbox_worker(queue: str, database: str) -> Any:
    """The bench worker with a `database`: per message one transaction holding the inbox
    row, one business row and one event (an outbox row), published after the commit."""
    from framework import Context, Event

    order, worker = _framework_types(queue)
    insert = (
        "INSERT INTO bench_orders VALUES (?)"
        if database.startswith("sqlite")
        else "INSERT INTO bench_orders VALUES ($1)"
    )

    class BenchOrderAccepted(Event):
        type_name = f"{type_name(queue)}.accepted"
        order_id: str

    async def handle(self: Any, msg: Any, ctx: Any) -> None:
        async with ctx.transaction() as tx:
            await tx.execute(insert, msg.order_id)
            await ctx.publish(BenchOrderAccepted(order_id=msg.order_id))
        self.on_message(msg)

    handle.__annotations__ = {"msg": order, "ctx": Context, "return": None}
    return type("BenchOutboxWorker", (worker,), {"database": database, "handle": handle})


class Framework(Contender):
    name = "framework"
    description = (
        "a real Worker subclass (validation, in-memory idempotency store, full "
        "failure handling, structlog JSON at INFO) and Bus.send in windows of "
        f"{PUBLISH_WINDOW}; run as `framework run` runs a worker (start-up heap frozen "
        "for the garbage collector), on the asyncio loop"
    )

    def __init__(self, idempotency: Any = None) -> None:
        # the Bus's `idempotency=`: a store or a URL; None is the default (memory://)
        self.idempotency = idempotency
        self.database: str | None = None  # workload S outbox-*: the worker's `database`

    async def open(self, url: str) -> None:
        from framework import Bus
        from framework.ops.gc_tuning import freeze_startup_heap
        from framework.ops.logs import configure_logging

        configure_logging("json", "info", force=True)
        self.bus = Bus.connect(
            url,
            service="bench",
            idempotency=self.idempotency,
            tracer_provider=self.tracer_provider(),
        )
        await self.bus.start()
        freeze_startup_heap()  # what `framework run` does (and the docs advise for your main)
        self.worker: Any = None
        self.task: asyncio.Task[None] | None = None

    def tracer_provider(self) -> Any:
        """None: the global one, which no SDK set (OpenTelemetry's API only: no spans)."""
        return None

    def _worker_cls(self, queue: str) -> Any:
        if self.database is not None:
            return _outbox_worker(queue, self.database)
        return _framework_types(queue)[1]

    async def declare(self, queue: str) -> None:
        await self.bus.declare(self._worker_cls(queue))

    def queues(self, queue: str) -> list[str]:
        from framework.consume.worker_spec import build_spec
        from framework.wire import names

        spec = build_spec(self._worker_cls(queue))
        return [q.name for q in spec.topology.queues] + [names.dlq_name(queue)]

    async def publish_many(self, queue: str, orders: list[dict[str, Any]]) -> None:
        cls = _framework_types(queue)[0]
        await _in_windows(orders, lambda o: self.bus.send(cls(**o)))

    async def publish_one(self, queue: str, order: dict[str, Any]) -> None:
        await self.bus.send(_framework_types(queue)[0](**order))

    async def start_consumer(self, queue: str, on_message: OnMessage) -> None:
        self.worker = self._worker_cls(queue)(self.bus)
        self.worker.on_message = on_message
        from framework.ops.gc_tuning import freeze_startup_heap

        self.task = asyncio.create_task(self.worker.run())
        await self.worker.wait_ready()
        freeze_startup_heap()  # as `framework run` does once its worker is consuming

    async def stop_consumer(self) -> None:
        await self.worker.stop()
        if self.task is not None:
            await self.task

    async def close(self) -> None:
        await self.bus.close()


class FrameworkUvloop(Framework):
    name = "framework+uvloop"
    uvloop = True
    description = "the same code as framework, on uvloop"


class FrameworkOtel(Framework):
    name = "framework+otel"
    description = (
        "the framework contender with OpenTelemetry spans on: the SDK's TracerProvider with a "
        "BatchSpanProcessor whose exporter drops every batch (the cost of recording and "
        "batching the spans, not of shipping them); framework alone has the API installed "
        "and no SDK, i.e. tracing off"
    )

    def tracer_provider(self) -> Any:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        contender = self
        self.spans = 0  # exported (and dropped) so far

        class Dropping(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                contender.spans += len(spans)
                return SpanExportResult.SUCCESS

        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(Dropping()))
        return self.provider

    async def close(self) -> None:
        await super().close()
        self.provider.shutdown()


# ---- FastStream -----------------------------------------------------------------------------


class FastStream(Contender):
    name = "faststream"
    uvloop = True
    description = (
        "FastStream RabbitBroker: @subscriber on a quorum RabbitQueue (default ack "
        "policy: ack after the handler), broker.publish(persist=True) with confirms "
        f"in windows of {PUBLISH_WINDOW}, logger=None; uvloop, as `faststream run` "
        "uses it when installed"
    )

    async def open(self, url: str) -> None:
        from faststream.rabbit import Channel, RabbitBroker

        self.broker = RabbitBroker(
            url, logger=None, default_channel=Channel(prefetch_count=PREFETCH)
        )
        await self.broker.connect()

    def _queue(self, queue: str) -> Any:
        from faststream.rabbit import QueueType, RabbitQueue

        return RabbitQueue(
            queue,
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments={"x-delivery-limit": QUEUE_ARGS["x-delivery-limit"]},
        )

    async def declare(self, queue: str) -> None:
        await self.broker.declare_queue(self._queue(queue))

    async def publish_many(self, queue: str, orders: list[dict[str, Any]]) -> None:
        publish = self.broker.publish
        await _in_windows(
            orders,
            lambda o: publish(
                OrderFields(**o), queue=queue, persist=True, message_id=uuid.uuid4().hex
            ),
        )

    async def publish_one(self, queue: str, order: dict[str, Any]) -> None:
        await self.broker.publish(
            OrderFields(**order), queue=queue, persist=True, message_id=uuid.uuid4().hex
        )

    async def start_consumer(self, queue: str, on_message: OnMessage) -> None:
        subscriber = self.broker.subscriber(self._queue(queue))

        @subscriber
        async def handle(msg: OrderFields) -> None:
            on_message(msg)

        self.subscriber = subscriber
        await self.broker.start()

    async def stop_consumer(self) -> None:
        await self.subscriber.stop()

    async def close(self) -> None:
        await self.broker.stop()


CONTENDERS: dict[str, type[Contender]] = {
    c.name: c
    for c in (AioPika, AioPikaUvloop, Tuned, Framework, FrameworkUvloop, FrameworkOtel, FastStream)
}
BASELINE = AioPika.name
