"""Shedding by forecast, without a broker: measured rates, backlog trends, the predicted
wait from the latest reports, staleness and the refusal (all on injected clocks)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from framework import Overloaded, RetryOnOverload
from framework.publish.send_retry import pause_after
from framework.resilience.load_forecast import (
    STALE_INTERVALS,
    BacklogTrend,
    HandlingRate,
    LoadBoard,
    LoadReport,
    queue_wait,
    refusal,
)
from framework.resilience.load_status import LoadFollower

pytestmark = pytest.mark.unit


def report(
    *,
    queue: str = "orders",
    replica: str = "r1",
    backlog: int = 0,
    trend: float = 0.0,
    rate: float = 10.0,
    interval: float = 1.0,
    types: tuple[str, ...] = ("orders.Place",),
    handling: float = 0.0,
) -> LoadReport:
    return LoadReport(
        queue=queue,
        replica=replica,
        types=types,
        backlog=backlog,
        backlog_trend=trend,
        in_flight=1,
        rate=rate,
        interval=interval,
        handling=handling,
    )


def test_rate_of_a_saturated_worker_is_what_it_settles() -> None:
    """One handler at a time taking 50 ms: 20 per second, by count and by Little's law."""
    rate = HandlingRate(window=10.0)
    rate.start(0.0)
    for i in range(1, 201):
        rate.settled(0.05, i * 0.05)
    assert rate.rate(10.0, concurrency=1) == pytest.approx(20.0, rel=0.01)


def test_rate_of_an_idle_worker_is_what_its_concurrency_allows() -> None:
    """An idle worker settling 1/s in 10 ms each could do 32 at once: 3200/s, not 1/s."""
    rate = HandlingRate(window=10.0)
    rate.start(0.0)
    for i in range(1, 11):
        rate.settled(0.01, float(i))
    assert rate.rate(10.0, concurrency=32) == pytest.approx(3200.0)


def test_rate_forgets_settlements_older_than_its_window() -> None:
    """Nothing settled within the window: no measured rate (0)."""
    rate = HandlingRate(window=5.0)
    rate.start(0.0)
    rate.settled(0.1, 1.0)
    assert rate.rate(2.0, concurrency=1) > 0
    assert rate.rate(7.0, concurrency=1) == 0.0


def test_rate_window_must_be_positive() -> None:
    """A zero window is a mistake, said so at construction."""
    with pytest.raises(ValueError, match="window must be > 0"):
        HandlingRate(window=0.0)


def test_mean_duration_is_over_the_window() -> None:
    """The mean handling time of the settlements still in the window."""
    rate = HandlingRate(window=5.0)
    rate.start(0.0)
    rate.settled(1.0, 1.0)
    rate.settled(0.2, 6.5)
    rate.settled(0.4, 7.0)
    assert rate.mean_duration(7.0) == pytest.approx(0.3)
    assert rate.mean_duration(20.0) == 0.0


def test_backlog_trend_is_the_change_per_second_between_readings() -> None:
    """100 -> 130 ready messages in 2 s: growing by 15/s; the first reading has no trend."""
    trend = BacklogTrend()
    assert trend.read(100, 10.0) == 0.0
    assert trend.read(130, 12.0) == pytest.approx(15.0)
    assert trend.read(120, 13.0) == pytest.approx(-10.0)


def test_queue_wait_is_backlog_over_rate_carried_forward_along_its_trend() -> None:
    """100 waiting, +20/s for 1.5 s since the reading, drained at 20/s: 6.5 s."""
    assert queue_wait(100, 20.0, 1.5, 20.0) == pytest.approx(6.5)
    assert queue_wait(10, -50.0, 1.0, 20.0) == 0.0  # drained by now
    assert queue_wait(5, 0.0, 0.0, 0.0) == math.inf  # a backlog nobody drains


def test_wait_sums_the_rates_of_all_fresh_replicas() -> None:
    """Three replicas at 10/s each drain 60 waiting messages in 2 s."""
    board = LoadBoard()
    for i, at in enumerate((0.0, 0.2, 0.4)):
        board.record(report(replica=f"r{i}", backlog=60, rate=10.0), at)
    assert board.predicted_wait("orders.Place", 0.4) == pytest.approx(2.0)


def test_prediction_adds_the_mean_handling_time() -> None:
    """A handler cancelled at the deadline must finish by then: 100 waiting at 20/s plus
    0.5 s of its own handling is 5.5 s; an empty queue is just the handling."""
    board = LoadBoard()
    board.record(report(replica="a", backlog=100, rate=10.0, handling=0.4), 0.0)
    board.record(report(replica="b", backlog=100, rate=10.0, handling=0.6), 0.0)
    assert board.predicted_wait("orders.Place", 0.0) == pytest.approx(5.5)
    board.record(report(replica="a", backlog=0, rate=10.0, handling=0.5), 0.1)
    board.record(report(replica="b", backlog=0, rate=10.0, handling=0.5), 0.1)
    assert board.predicted_wait("orders.Place", 0.1) == pytest.approx(0.5)


def test_wait_reads_the_backlog_of_the_freshest_report() -> None:
    """Replicas read the same queue at different times: the latest reading counts."""
    board = LoadBoard()
    board.record(report(replica="a", backlog=500, rate=10.0), 0.0)
    board.record(report(replica="b", backlog=100, rate=10.0), 0.5)
    assert board.predicted_wait("orders.Place", 0.5) == pytest.approx(5.0)


def test_stale_reports_predict_nothing() -> None:
    """A replica silent for more than STALE_INTERVALS of its interval no longer counts."""
    board = LoadBoard()
    board.record(report(backlog=100, rate=10.0, interval=1.0), 0.0)
    assert board.predicted_wait("orders.Place", STALE_INTERVALS) is not None
    assert board.predicted_wait("orders.Place", STALE_INTERVALS + 0.01) is None


def test_a_stale_replica_rate_is_dropped_from_the_sum() -> None:
    """A replica that stopped reporting no longer adds its rate: the wait doubles."""
    board = LoadBoard()
    board.record(report(replica="gone", backlog=40, rate=10.0), 0.0)
    board.record(report(replica="here", backlog=40, rate=10.0), 3.5)
    assert board.predicted_wait("orders.Place", 3.5) == pytest.approx(4.0)


def test_replicas_that_restart_do_not_pile_up() -> None:
    """Each run of a worker is a new replica id; the quiet ones are forgotten on the next
    report, so the board holds only the live replicas."""
    board = LoadBoard()
    for run in range(100):
        board.record(report(replica=f"run{run}", backlog=10, rate=10.0), run * 10.0)
    assert board.predicted_wait("orders.Place", 990.0) == pytest.approx(1.0)
    assert board.replicas("orders") == 1


def test_types_no_report_covers_are_not_predicted() -> None:
    """A command type no worker reported: no prediction (never refused)."""
    board = LoadBoard()
    board.record(report(backlog=100), 0.0)
    assert board.predicted_wait("payments.Charge", 0.0) is None


def test_refusal_only_when_the_wait_exceeds_the_time_left() -> None:
    """Wait 6 s with 2 s left: refused, retry after 4 s; no prediction, room, or a past
    deadline: sent."""
    assert refusal(6.0, 2.0, unknown=5.0) == pytest.approx(4.0)
    assert refusal(1.0, 2.0, unknown=5.0) is None
    assert refusal(None, 2.0, unknown=5.0) is None
    assert refusal(6.0, -1.0, unknown=5.0) is None
    assert refusal(math.inf, 2.0, unknown=5.0) == 5.0


NOW = 1_800_000_000.0


def follower_with(backlog: int, rate: float) -> LoadFollower:
    follower = LoadFollower("svc")
    follower.receive(report(backlog=backlog, rate=rate).model_dump_json().encode(), 100.0)
    return follower


def test_send_predicted_to_expire_is_refused_with_retry_after() -> None:
    """100 waiting at 20/s is 5 s; a 2 s ttl is refused: Overloaded, retry after ~3 s."""
    follower = follower_with(100, 20.0)
    with pytest.raises(Overloaded, match=r"handle it in about 5\.00s") as caught:
        follower.refuse_if_late("orders.Place", "k1", None, 2.0, now=NOW, monotonic=100.0)
    assert caught.value.retry_after == pytest.approx(3.0)
    assert caught.value.message_id == "k1"
    assert follower.refusals == 1


def test_send_with_time_enough_or_no_deadline_is_not_refused() -> None:
    """The same queue: a 10 s ttl fits, a send without a deadline is never refused."""
    follower = follower_with(100, 20.0)
    follower.refuse_if_late("orders.Place", "k1", None, 10.0, now=NOW, monotonic=100.0)
    follower.refuse_if_late("orders.Place", "k2", None, None, now=NOW, monotonic=100.0)
    assert follower.refusals == 0


def test_absolute_deadline_counts_like_a_ttl() -> None:
    """deadline= (a datetime) 2 s ahead is refused like ttl=2."""
    follower = follower_with(100, 20.0)
    deadline = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=2)
    with pytest.raises(Overloaded):
        follower.refuse_if_late("orders.Place", "k1", deadline, None, now=NOW, monotonic=100.0)


def test_invalid_report_is_ignored() -> None:
    """A body that is not a load report changes nothing (and is logged)."""
    follower = LoadFollower("svc")
    follower.receive(b'{"queue": "orders"}', 0.0)
    follower.receive(b"not json", 0.0)
    assert follower.board.predicted_wait("orders.Place", 0.0) is None


def test_follower_queue_is_named_inside_the_service() -> None:
    """`<service>.load.<random>`: covered by the service user's own configure rights."""
    assert LoadFollower("orders").queue_name.startswith("orders.load.")


def test_overloaded_keeps_its_old_constructor() -> None:
    """Existing calls (message, routing key, id, queue) still work; retry_after is None."""
    error = Overloaded("full", routing_key="rk", message_id="m", queue="q")
    assert (error.queue, error.retry_after) == ("q", None)


def test_pause_after_a_refusal_honours_its_retry_after() -> None:
    """The longer of backoff and retry_after; a refusal without one keeps the backoff."""
    assert pause_after(0.1, Overloaded("late", retry_after=3.0)) == 3.0
    assert pause_after(0.1, Overloaded("full")) == 0.1
    assert pause_after(5.0, Overloaded("late", retry_after=3.0)) == 5.0


async def test_retry_on_overload_waits_the_predicted_time_then_sends() -> None:
    """Refused once with retry_after=1.5: the send pauses 1.5 s (injected) and succeeds."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    refusals = [Overloaded("late", retry_after=1.5)]

    async def send() -> str:
        if refusals:
            raise refusals.pop()
        return "key"

    assert await RetryOnOverload(within=30.0, sleep=sleep).call(send) == "key"
    assert slept == [1.5]


async def test_retry_on_overload_gives_up_when_retry_after_is_past_within() -> None:
    """retry_after beyond `within`: re-raised at once, no pointless sleep."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def send() -> str:
        raise Overloaded("late", retry_after=60.0)

    with pytest.raises(Overloaded):
        await RetryOnOverload(within=10.0, sleep=sleep).call(send)
    assert slept == []
