"""Which acks to send: the contiguous prefix at once, the rest one by one (pure), and
when the coalescer sends them."""

from __future__ import annotations

from dataclasses import dataclass

from framework.wire.acks import AckCoalescer, AckPlan, plan_acks


def test_nothing_settled_nothing_sent() -> None:
    """No settled tags, no acks."""
    assert plan_acks({1, 2}, set()) == AckPlan(None, ())


def test_contiguous_prefix_is_one_multiple_ack() -> None:
    """Tags below the lowest in-flight tag go in one multiple ack."""
    assert plan_acks({5, 9}, {1, 2, 3, 4}) == AckPlan(4, ())


def test_never_acks_past_an_in_flight_tag() -> None:
    """A handler still running on tag 3 keeps multiple=True below it; later tags go singly."""
    plan = plan_acks({3}, {1, 2, 4, 5})
    assert plan == AckPlan(2, (4, 5))
    assert 3 not in plan.singles
    assert plan.multiple_up_to is not None and plan.multiple_up_to < 3


def test_all_settled_when_nothing_in_flight() -> None:
    """With nothing in flight, everything settled is acked up to the highest tag."""
    assert plan_acks(set(), {7, 8, 10}) == AckPlan(10, ())


def test_single_tag_uses_a_plain_ack() -> None:
    """One tag is acked on its own (no multiple flag)."""
    assert plan_acks({9}, {4}) == AckPlan(None, (4,))


def test_only_tags_beyond_a_gap() -> None:
    """If the oldest delivery is still running, later settled ones are acked one by one."""
    assert plan_acks({1}, {2, 3}) == AckPlan(None, (2, 3))


class RecordingChannel:
    """Stands in for the aiormq channel: records the ack frames it is asked to send."""

    is_closed = False

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames.append((tag, multiple))


@dataclass
class FakeDelivery:
    channel: RecordingChannel
    delivery_tag: int

    async def ack(self) -> None:  # pragma: no cover - only the in-memory path acks itself
        raise AssertionError("a channel delivery is acked through the coalescer")


async def test_batch_is_capped_at_half_the_prefetch_window() -> None:
    """With prefetch 32 the broker stops delivering once 32 are unacked: the coalescer
    flushes at 16 settled deliveries instead of waiting for a batch that cannot fill."""
    channel = RecordingChannel()
    acks = AckCoalescer(max_batch=512, max_delay=60.0, prefetch=32)
    deliveries = [FakeDelivery(channel, tag) for tag in range(1, 33)]
    for delivery in deliveries:
        acks.delivered(delivery)  # type: ignore[arg-type]
    for delivery in deliveries[:16]:
        await acks.ack(delivery)  # type: ignore[arg-type]
    assert channel.frames == [(16, True)]
    assert acks.frames == 1
    await acks.close()


async def test_one_frame_for_a_whole_batch() -> None:
    """A full batch of in-order settled deliveries costs one multiple=True ack frame."""
    channel = RecordingChannel()
    acks = AckCoalescer(max_batch=500, max_delay=60.0, prefetch=1000)
    for tag in range(1, 1001):
        delivery = FakeDelivery(channel, tag)
        acks.delivered(delivery)  # type: ignore[arg-type]
        await acks.ack(delivery)  # type: ignore[arg-type]
    assert channel.frames == [(500, True), (1000, True)]
    assert acks.frames == 2
    await acks.close()
