"""`Batcher`: the store calls that arrive together go in one round trip, each caller
getting its own result or error, bounded per call, drained on close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from framework.idempotency.batching import Batcher
from framework.idempotency.claims import within


class Backend:
    """A round trip that doubles numbers; records each batch; can be held, or fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent = asyncio.Event()
        self.error: Exception | None = None

    async def run(self, calls: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(calls))
        self.sent.set()
        await self.gate.wait()
        if self.error is not None and (len(calls) > 1 or calls[0] < 0):
            raise self.error
        return [ValueError(f"bad {n}") if n < 0 else n * 2 for n in calls]


@pytest.fixture
async def backend() -> Backend:
    return Backend()


async def test_calls_of_one_tick_go_in_one_batch(backend: Backend) -> None:
    """Calls made together are one round trip, each caller getting its own result."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    assert await asyncio.gather(*(batcher.call(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert backend.batches == [[0, 1, 2, 3, 4]]
    await batcher.close()


async def test_calls_during_a_round_trip_go_in_the_next(backend: Backend) -> None:
    """Calls arriving while a batch is in flight wait and go together in the next one."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    backend.gate.clear()
    first = asyncio.ensure_future(batcher.call(1))
    await backend.sent.wait()
    later = [asyncio.ensure_future(batcher.call(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert backend.batches == [[1]]  # one round trip in flight at a time
    backend.gate.set()
    assert await asyncio.gather(first, *later) == [2, 4, 6, 8]
    assert backend.batches == [[1], [2, 3, 4]]
    await batcher.close()


async def test_batches_are_bounded(backend: Backend) -> None:
    """No round trip carries more than `max_batch` calls."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test", max_batch=2)
    await asyncio.gather(*(batcher.call(n) for n in range(5)))
    assert backend.batches == [[0, 1], [2, 3], [4]]
    await batcher.close()


async def test_an_error_result_is_that_callers_alone(backend: Backend) -> None:
    """A call the backend answers with an error raises it; the others get their results."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    results = await asyncio.gather(*(batcher.call(n) for n in (1, -1, 2)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -1"
    await batcher.close()


async def test_a_failed_round_trip_fails_every_call_in_it(backend: Backend) -> None:
    """A round trip that fails (connection lost) fails each of its calls with that error."""
    backend.error = ConnectionError("down")
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    results = await asyncio.gather(*(batcher.call(n) for n in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert backend.batches == [[1, 2]]  # not redone: the error is not one call's
    await batcher.close()


async def test_a_batch_failing_for_one_call_is_redone_call_by_call(backend: Backend) -> None:
    """A batch failing with an error one call's data can cause is redone one call at a
    time: only that call's caller gets the error."""
    backend.error = LookupError("invalid key")
    batcher: Batcher[int, int] = Batcher(
        backend.run, name="test", isolate=lambda exc: isinstance(exc, LookupError)
    )
    results = await asyncio.gather(*(batcher.call(n) for n in (1, -1, 2)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4 and isinstance(results[1], LookupError)
    assert backend.batches == [[1, -1, 2], [1], [-1], [2]]
    await batcher.close()


async def test_a_call_past_its_bound_times_out_while_the_round_trip_hangs(
    backend: Backend,
) -> None:
    """A caller bounded by `within` gets TimeoutError although its round trip still hangs;
    the round trip goes on for the others."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    backend.gate.clear()
    patient = asyncio.ensure_future(batcher.call(1))
    with pytest.raises(TimeoutError):
        await within(0.05, batcher.call(2))
    backend.gate.set()
    assert await patient == 2
    await batcher.close()


async def test_a_call_given_up_before_its_turn_is_not_sent(backend: Backend) -> None:
    """A queued call whose caller timed out before its batch left is never sent."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    backend.gate.clear()
    first = asyncio.ensure_future(batcher.call(1))
    await backend.sent.wait()
    with pytest.raises(TimeoutError):
        await within(0.05, batcher.call(2))
    third = asyncio.ensure_future(batcher.call(3))
    await asyncio.sleep(0)
    backend.gate.set()
    assert list(await asyncio.gather(first, third)) == [2, 6]
    assert backend.batches == [[1], [3]]
    await batcher.close()


async def test_close_runs_queued_calls_then_refuses_new_ones(backend: Backend) -> None:
    """Closing waits for the calls already queued to be answered; later calls raise."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test")
    backend.gate.clear()
    queued = [asyncio.ensure_future(batcher.call(n)) for n in (1, 2)]
    await backend.sent.wait()
    queued.append(asyncio.ensure_future(batcher.call(3)))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    backend.gate.set()
    await closing
    assert [q.result() for q in queued] == [2, 4, 6]
    with pytest.raises(RuntimeError, match="test is closed"):
        await batcher.call(4)


async def test_no_task_is_left_once_idle(backend: Backend) -> None:
    """The batcher's task ends when nothing is pending: an idle store runs nothing."""
    batcher: Batcher[int, int] = Batcher(backend.run, name="test-idle")
    await batcher.call(1)
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test-idle"]
    await batcher.close()
