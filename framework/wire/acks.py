"""Coalesced acks: one `basic.ack(multiple=True)` for a run of handled deliveries.

On a quorum queue every ack is a consensus operation, so acking one by one caps consumer
throughput. A delivery is marked *settled* only after its handler finished and any retry/DLQ
publish was confirmed; `flush` then acks, per channel, the contiguous prefix of settled
delivery tags with one frame (never a tag still in flight: `multiple=True` would ack it),
and the settled tags beyond a gap one by one, so a slow handler never holds back the rest
(or the prefetch window). The window of handled-but-unacked deliveries is bounded by
`max_batch` and `max_delay`; a crash inside it redelivers them and idempotency absorbs it.

`plan_acks` is the pure part, unit-tested without a broker. The coalescer is the `Acker`
of both broker ports: it acks on each delivery's settle handle (`Incoming.channel`: the
aiormq channel on RabbitMQ, the in-memory broker's channel in tests), so the same ack code
runs on both.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from framework.wire.delivery import Incoming
from framework.wire.port import SettleChannel

_log = structlog.get_logger("framework.acks")


@dataclass
class _ChannelState:
    in_flight: set[int] = field(default_factory=set)
    settled: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class AckPlan:
    """`multiple_up_to`: ack every tag <= it at once (None: none); `singles`: ack each."""

    multiple_up_to: int | None
    singles: tuple[int, ...]


def plan_acks(in_flight: set[int], settled: set[int]) -> AckPlan:
    """Which acks to send for these settled tags, given the tags still in flight."""
    if not settled:
        return AckPlan(None, ())
    lowest_busy = min(in_flight) if in_flight else None
    prefix = [t for t in settled if lowest_busy is None or t < lowest_busy]
    rest = tuple(sorted(t for t in settled if lowest_busy is not None and t > lowest_busy))
    if len(prefix) == 1 and not rest:
        return AckPlan(None, (prefix[0],))
    return AckPlan(max(prefix) if prefix else None, rest)


class AckCoalescer:
    """Collects settled deliveries and acks them in batches (see module docstring).

    A batch is flushed once `max_batch` settled deliveries are pending, capped at half the
    prefetch window (the broker sends no more deliveries while the window is full of
    settled-but-unacked ones), or `max_delay` seconds after the flusher started. `frames`
    counts the ack frames sent: on a quorum queue each is a consensus command.
    """

    def __init__(
        self, *, max_batch: int = 512, max_delay: float = 0.025, prefetch: int | None = None
    ) -> None:
        self._max_batch = max(1, min(max_batch, prefetch // 2)) if prefetch else max_batch
        self.frames = 0
        self._max_delay = max_delay
        self._states: dict[SettleChannel, _ChannelState] = {}
        self._pending = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def delivered(self, incoming: Incoming) -> None:
        """Record a delivery as in flight (call as soon as it arrives)."""
        if incoming.delivery_tag is not None:
            state = self._states.get(incoming.channel)
            if state is None:
                state = self._states[incoming.channel] = _ChannelState()
            state.in_flight.add(incoming.delivery_tag)

    def abandoned(self, incoming: Incoming) -> None:
        """The delivery was nacked/rejected individually: it no longer blocks the prefix."""
        state = self._states.get(incoming.channel)
        if state is not None:
            state.in_flight.discard(incoming.delivery_tag)

    async def ack(self, incoming: Incoming) -> None:
        """Mark a delivery done; its ack is sent within `max_delay` or `max_batch` acks."""
        if incoming.delivery_tag is None:  # nothing to coalesce: ack it on its own
            await incoming.ack()
            return
        channel = incoming.channel
        state = self._states.get(channel)
        if state is None:
            state = self._states[channel] = _ChannelState()
        state.in_flight.discard(incoming.delivery_tag)
        state.settled.add(incoming.delivery_tag)
        self._pending += 1
        if self._pending >= self._max_batch:
            await self.flush()
        else:
            self._ensure_flusher()

    async def flush(self) -> None:
        """Send every ack that may be sent now."""
        async with self._lock:
            for channel, state in list(self._states.items()):
                if channel.is_closed:  # its unacked deliveries go back to the queue
                    del self._states[channel]
                    continue
                plan = plan_acks(state.in_flight, state.settled)
                state.settled.difference_update(plan.singles)
                if plan.multiple_up_to is not None:
                    state.settled = {t for t in state.settled if t > plan.multiple_up_to}
                self._pending = sum(len(s.settled) for s in self._states.values())
                self.frames += len(plan.singles) + (plan.multiple_up_to is not None)
                # planned acks are sent even if the flusher is cancelled meanwhile
                await asyncio.shield(_send(channel, plan))
                if not state.in_flight and not state.settled:
                    del self._states[channel]

    def _ensure_flusher(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_soon(), name="ack-flusher")

    async def _flush_soon(self) -> None:
        while self._pending:
            await asyncio.sleep(self._max_delay)
            await self.flush()

    async def close(self) -> None:
        """Flush what is left and stop the background flusher (call before closing the
        channel)."""
        try:
            await self.flush()
        finally:  # also when a bounded shutdown cuts the flush short: no flusher left behind
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task


async def _send(channel: SettleChannel, plan: AckPlan) -> None:
    try:
        if plan.multiple_up_to is not None:
            await channel.basic_ack(plan.multiple_up_to, multiple=True)
        for tag in plan.singles:
            await channel.basic_ack(tag)
    except Exception as exc:  # noqa: BLE001 - any ack failure means a dead channel
        # The channel died: its unacked deliveries come back and idempotency absorbs them.
        _log.warning(
            "acks.not_sent", error=repr(exc), up_to=plan.multiple_up_to, singles=len(plan.singles)
        )
