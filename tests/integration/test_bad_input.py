"""Bad input from outside is dead-lettered as invalid, alone: nothing else is lost or harmed.

Keyless deliveries, poisoned header tables, forged fw- headers, oversized and deeply nested
bodies, a 200 KB exception text, a message the broker refuses: each on its own queue.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from pamqp.commands import Basic

from framework import Bus, Command, Context, Worker
from framework.errors import MessageRefused
from framework.testing import BrokerAdmin
from framework.wire import names
from framework.wire.guard import MAX_DEPTH
from framework.wire.header_limits import MAX_HEADER_TEXT
from framework.wire.keys import CONTENT_KEY_PREFIX
from tests.integration.raw_publish import publish_keyless, publish_poisoned


class Note(Command):
    type_name = "tests.bad_input.Note"
    text: str


class Reconnects:
    """Counts the bus's reconnects (either connection)."""

    def __init__(self, bus: Bus) -> None:
        self.count = 0
        bus.add_reconnect_listener(self._seen)

    async def _seen(self) -> None:
        self.count += 1


@pytest.fixture
async def own_bus(amqp_url: str) -> AsyncIterator[Bus]:
    """A bus with a service name of its own, so its connections can be found by name."""
    async with Bus.connect(amqp_url, service=f"badinput-{uuid.uuid4().hex[:8]}") as bus:
        yield bus


def note_body(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


async def wait_until(condition: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the handler list has no event of its own
            await asyncio.sleep(0.05)


# ---- item 1: keyless messages ------------------------------------------------------------


async def test_keyless_messages_on_two_channels_are_dead_lettered_not_skipped(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str, amqp_url: str
) -> None:
    """Two different keyless messages, each delivery tag 1 on its own channel, both go to
    the DLQ as invalid (saying to set message_id); neither is handled or acked as a duplicate."""
    handled: list[str] = []

    class NoteWorker(Worker):
        queue = queue_name

        async def handle(self, msg: Note, ctx: Context) -> None:
            handled.append(msg.text)

    dlq = names.dlq_name(queue_name)
    first = await worker_factory(NoteWorker)
    await publish_keyless(amqp_url, queue_name, note_body("first"), type_name=Note.type_name)
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    await first.stop()
    second = await worker_factory(NoteWorker)  # a new channel: delivery tags start at 1 again
    await publish_keyless(amqp_url, queue_name, note_body("second"), type_name=Note.type_name)
    assert await broker_admin.wait_for_depth(dlq, 2) == 2
    dead = await broker_admin.drain(dlq)
    assert handled == [] and second.stats.handled == 0
    assert [json.loads(m.body)["text"] for m in dead] == ["first", "second"]
    for message in dead:
        assert message.headers[names.REASON] == "invalid"
        assert "must set the AMQP message_id property" in message.headers[names.ERROR]
        assert message.headers[names.KEY_ORIGIN] == "content"
        assert (message.message_id or "").startswith(CONTENT_KEY_PREFIX)
    assert dead[0].message_id != dead[1].message_id


async def test_keyless_content_opt_in_handles_each_body_exactly_once(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str, amqp_url: str
) -> None:
    """With keyless = "content", keyless bodies a, b, then c, a, b on a second channel are
    handled once each; the repeats are absorbed as duplicates."""
    handled: list[str] = []

    class ContentKeyed(Worker):
        queue = queue_name
        keyless = "content"

        async def handle(self, msg: Note, ctx: Context) -> None:
            handled.append(msg.text)

    first = await worker_factory(ContentKeyed)
    for text in ("a", "b"):
        await publish_keyless(amqp_url, queue_name, note_body(text), type_name=Note.type_name)
    await wait_until(lambda: len(handled) == 2)
    await first.stop()
    second = await worker_factory(ContentKeyed)  # a new channel: delivery tags start at 1
    for text in ("c", "a", "b"):
        await publish_keyless(amqp_url, queue_name, note_body(text), type_name=Note.type_name)
    await wait_until(lambda: second.stats.duplicates + second.stats.handled == 3)
    assert sorted(handled) == ["a", "b", "c"] and second.stats.duplicates == 2
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


# ---- item 5: long error texts, refused messages ---------------------------------------


async def test_a_200kb_error_text_is_bounded_and_costs_no_reconnect(
    own_bus: Bus, worker_factory: Any, queue_name: str
) -> None:
    """A handler raising a 200 KB error is retried with a bounded fw-error and handled on
    attempt 2; the bus never reconnects and other sends on it go through meanwhile."""
    reconnects = Reconnects(own_bus)
    seen: list[tuple[int, int]] = []
    others: list[str] = []

    class Noisy(Worker):
        queue = queue_name
        retry_base_delay = 0.1
        retry_max_delay = 0.2

        async def handle(self, msg: Note, ctx: Context) -> None:
            if msg.text != "noisy":
                others.append(msg.text)
                return
            seen.append((ctx.attempt, len(str(ctx.headers.get(names.ERROR, "")))))
            if ctx.attempt == 1:
                raise ValueError("x" * 200_000)

    worker = await worker_factory(Noisy, own_bus)
    await own_bus.send(Note(text="noisy"))
    sends = [own_bus.send(Note(text=f"other-{i}")) for i in range(20)]
    await asyncio.gather(*sends)
    await wait_until(lambda: len(seen) == 2 and len(others) == 20)
    assert seen[0] == (1, 0)
    assert seen[1][0] == 2 and 0 < seen[1][1] <= MAX_HEADER_TEXT
    assert worker.stats.retried == 1 and worker.stats.handled == 21
    assert reconnects.count == 0


async def test_oversized_header_frame_is_refused_at_once_and_the_bus_keeps_working(
    own_bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A publish whose headers exceed frame_max raises MessageRefused without sending it:
    no connection close, and the next publish on the bus is confirmed."""
    reconnects = Reconnects(own_bus)
    async with broker_admin._connection.channel() as channel:  # a plain queue of the test's
        await channel.declare_queue(queue_name, auto_delete=False)
    try:
        huge = aio_pika.Message(b"{}", message_id="huge", headers={"big": "x" * 200_000})
        with pytest.raises(MessageRefused, match="frame_max"):
            await own_bus.publisher.publish(huge, "", queue_name, timeout=5)
        await own_bus.publisher.publish(aio_pika.Message(b"{}", message_id="fine"), "", queue_name)
        assert await broker_admin.depth(queue_name) == 1
        assert reconnects.count == 0
    finally:
        await broker_admin.delete_queues(queue_name)


async def test_message_the_broker_closes_the_channel_over_is_refused_promptly(
    own_bus: Bus, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A message the broker answers with a channel close (406, invalid expiration) raises
    MessageRefused after one resend, well within the publish timeout; the bus keeps working."""
    async with broker_admin._connection.channel() as channel:
        await channel.declare_queue(queue_name, auto_delete=False)
    try:
        bad = Basic.Properties(message_id="bad-expiration", expiration="-1")
        started = time.monotonic()
        with pytest.raises(MessageRefused, match="invalid expiration"):
            await own_bus.publisher.publish_properties(b"{}", bad, "", queue_name, timeout=20)
        assert time.monotonic() - started < 20 / 4  # not resent until the timeout
        await own_bus.publisher.publish(aio_pika.Message(b"{}", message_id="fine"), "", queue_name)
        assert await broker_admin.depth(queue_name) == 1
    finally:
        await broker_admin.delete_queues(queue_name)


# ---- item 6: a poisoned header table -----------------------------------------------------


async def test_poisoned_header_table_is_dead_lettered_alone(
    own_bus: Bus,
    worker_factory: Any,
    broker_admin: BrokerAdmin,
    queue_name: str,
    amqp_url: str,
) -> None:
    """A 1500-level header table among 30 good messages (prefetch 16): it goes to the DLQ as
    invalid, every good one is handled once, and the consume connection never drops (no
    reconnect, no redelivery)."""
    reconnects = Reconnects(own_bus)
    handled: Counter[str] = Counter()

    class Victim(Worker):
        queue = queue_name
        prefetch = 16

        async def handle(self, msg: Note, ctx: Context) -> None:
            handled[msg.text] += 1

    await own_bus.declare(Victim)  # queue everything first: the poison sits among prefetched
    for i in range(15):
        await own_bus.send(Note(text=f"good-{i}"))
    size = await publish_poisoned(
        amqp_url, queue_name, note_body("poison"), message_id="poison", type_name=Note.type_name
    )
    for i in range(15, 30):
        await own_bus.send(Note(text=f"good-{i}"))
    assert 9_000 < size < 20_000
    worker = await worker_factory(Victim, own_bus)
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    await wait_until(lambda: len(handled) == 30)
    dead = await broker_admin.drain(dlq)
    assert [m.message_id for m in dead] == ["poison"]
    assert dead[0].headers[names.REASON] == "invalid"
    assert f"nested deeper than {MAX_DEPTH} levels" in dead[0].headers[names.ERROR]
    assert set(handled.values()) == {1} and worker.stats.handled == 30
    assert worker.stats.duplicates == 0  # nothing was redelivered
    assert reconnects.count == 0 and own_bus.is_connected


# ---- item 7: forged numeric headers ------------------------------------------------------


@pytest.mark.parametrize("attempt", [2**62, 2**63 - 1, "18446744073709551616", -4])
async def test_forged_attempt_is_ignored_and_retries_still_work(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str, attempt: Any
) -> None:
    """A forged fw-attempt counts as attempt 1: failing once, the handler runs exactly twice
    (retried, then handled), and the retry copy encodes."""
    runs: list[int] = []

    class Flaky(Worker):
        queue = queue_name
        retry_base_delay = 0.1
        retry_max_delay = 0.2

        async def handle(self, msg: Note, ctx: Context) -> None:
            runs.append(ctx.attempt)
            if len(runs) == 1:
                raise ConnectionError("once")

    worker = await worker_factory(Flaky)
    await broker_admin.publish_raw(
        queue_name,
        note_body("forged"),
        type=Note.type_name,
        message_id="forged-attempt",
        headers={names.ATTEMPT: attempt},
    )
    await wait_until(lambda: worker.stats.handled == 1)
    assert runs == [1, 2]
    assert await broker_admin.depth(names.dlq_name(queue_name)) == 0


@pytest.mark.parametrize("deadline", ["18446744073709551616", -1, 2**62])
async def test_forged_deadline_is_invalid(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str, deadline: Any
) -> None:
    """A forged fw-deadline dead-letters the message as invalid at once (never handled); its
    DLQ copy encodes and names the header."""
    runs: list[str] = []

    class Timely(Worker):
        queue = queue_name

        async def handle(self, msg: Note, ctx: Context) -> None:
            runs.append(msg.text)

    await worker_factory(Timely)
    await broker_admin.publish_raw(
        queue_name,
        note_body("forged"),
        type=Note.type_name,
        message_id="forged-deadline",
        headers={names.DEADLINE: deadline},
    )
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    (dead,) = await broker_admin.drain(dlq)
    assert dead.headers[names.REASON] == "invalid" and names.DEADLINE in dead.headers[names.ERROR]
    assert runs == []


# ---- item 8: bodies ----------------------------------------------------------------------


async def test_deeply_nested_body_is_invalid_on_the_first_attempt(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A 100k-level nested JSON body goes to the DLQ as invalid after one attempt."""

    class Parser(Worker):
        queue = queue_name

        async def handle(self, msg: Note, ctx: Context) -> None:
            raise AssertionError("never handled")

    worker = await worker_factory(Parser)
    body = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    await broker_admin.publish_raw(queue_name, body, type=Note.type_name, message_id="nested")
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    (dead,) = await broker_admin.drain(dlq)
    assert dead.headers[names.REASON] == "invalid" and dead.headers[names.ATTEMPTS] == 1
    assert "nested too deeply" in dead.headers[names.ERROR]
    assert worker.stats.retried == 0


async def test_body_over_max_body_bytes_is_dead_lettered_unparsed_and_kept_whole(
    bus: Bus, worker_factory: Any, broker_admin: BrokerAdmin, queue_name: str
) -> None:
    """A 2 MiB body over the default 1 MiB limit is dead-lettered as invalid (saying the size
    and the limit) and its DLQ copy keeps the whole body; a small one is handled."""
    handled: list[int] = []

    class Small(Worker):
        queue = queue_name

        async def handle(self, msg: Note, ctx: Context) -> None:
            handled.append(len(msg.text))

    await worker_factory(Small)
    big = note_body("x" * (2 * 1024 * 1024))
    await broker_admin.publish_raw(queue_name, big, type=Note.type_name, message_id="big")
    await bus.send(Note(text="small"))
    dlq = names.dlq_name(queue_name)
    assert await broker_admin.wait_for_depth(dlq, 1) == 1
    (dead,) = await broker_admin.drain(dlq)
    assert dead.headers[names.REASON] == "invalid"
    assert f"body is {len(big)} bytes" in dead.headers[names.ERROR]
    assert "max_body_bytes=1048576" in dead.headers[names.ERROR]
    assert dead.body == big
    await wait_until(lambda: handled == [5])
