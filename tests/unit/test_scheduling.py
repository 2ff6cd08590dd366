"""The pure decisions of scheduled sends: validation, rounding, the countdown's stages."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from framework.publish.scheduling import (
    MAX_DELAY,
    STAGES,
    UNIT_MS,
    InvalidSchedule,
    delay_units,
    requested_delay,
    route_for,
    scheduled,
    stage_headers,
    stages,
    waits_of,
)
from framework.wire import names
from framework.wire.envelope import Envelope

NOW = 1_700_000_000.0


def test_no_schedule_sends_now() -> None:
    """Neither keyword, a zero delay or a past not_before: no schedule."""
    assert requested_delay(None, None, NOW) is None
    assert requested_delay(0, None, NOW) is None
    past = datetime.fromtimestamp(NOW - 5, UTC)
    assert requested_delay(None, past, NOW) is None


def test_not_before_becomes_seconds_from_now_in_any_time_zone() -> None:
    """An aware not_before in any zone is the same instant."""
    zone = timezone(timedelta(hours=5))
    due = datetime.fromtimestamp(NOW + 90, zone)
    assert requested_delay(None, due, NOW) == pytest.approx(90)


@pytest.mark.parametrize(
    ("delay", "not_before", "match"),
    [
        (-0.1, None, "negative"),
        (math.nan, None, "not a number"),
        (math.inf, None, "not a number"),
        (MAX_DELAY + 1, None, "maximum"),
        (1.0, datetime.fromtimestamp(NOW, UTC), "not both"),
        (None, datetime(2030, 1, 1), "time zone"),
    ],
)
def test_bad_schedules_are_refused_with_what_to_do(
    delay: float | None, not_before: datetime | None, match: str
) -> None:
    """Each mistake raises InvalidSchedule (a ValueError) saying what went wrong."""
    with pytest.raises(InvalidSchedule, match=match):
        requested_delay(delay, not_before, NOW)
    assert issubclass(InvalidSchedule, ValueError)


def test_the_maximum_delay_is_accepted() -> None:
    """7 days exactly is within the countdown."""
    assert requested_delay(MAX_DELAY, None, NOW) == MAX_DELAY
    assert delay_units(MAX_DELAY) < 2**STAGES


@pytest.mark.parametrize(
    ("delay", "units"), [(0.001, 1), (0.1, 1), (0.1001, 2), (1.5, 15), (0.3, 3), (60.0, 600)]
)
def test_delays_round_up_to_whole_units(delay: float, units: int) -> None:
    """Never due early: a partial unit counts as a whole one (0.3 s is 3 units, not 4)."""
    assert delay_units(delay) == units


def test_each_stage_waits_twice_the_one_before_and_ends_in_the_command_exchange() -> None:
    """Stage k waits UNIT_MS * 2**k, dead-letters into stage k+1, the last into fw.commands."""
    all_stages = stages()
    assert len(all_stages) == STAGES
    assert all_stages[0].exchange == names.SCHEDULE_EXCHANGE
    for stage, following in itertools.pairwise(all_stages):
        assert following.wait_ms == 2 * stage.wait_ms
        assert stage.next_exchange == following.exchange
    assert all_stages[0].wait_ms == UNIT_MS
    assert all_stages[-1].next_exchange == names.COMMANDS_EXCHANGE
    assert len({s.queue for s in all_stages}) == STAGES


@pytest.mark.parametrize("units", [1, 2, 15, 600, 6_048_000, 2**STAGES - 1])
def test_the_headers_spell_the_delay_in_binary(units: int) -> None:
    """The stages holding a message add up to its delay exactly, each at most once."""
    headers = stage_headers(units)
    assert set(headers) == {s.header for s in stages()}
    held = [s.wait_ms for s in stages() if headers[s.header] == "1"]
    assert sum(held) == units * UNIT_MS
    assert held == waits_of(units)


def test_units_outside_the_countdown_are_a_bug() -> None:
    """Zero or more units than the stages can count is refused (validation comes first)."""
    with pytest.raises(ValueError, match="cannot be counted"):
        stage_headers(0)
    with pytest.raises(ValueError, match="cannot be counted"):
        stage_headers(2**STAGES)


def test_a_days_long_delay_takes_at_most_one_hop_per_stage() -> None:
    """Three days: a handful of stages, summing to the (rounded-up) delay."""
    waits = waits_of(delay_units(3 * 24 * 3600))
    assert len(waits) <= STAGES
    assert sum(waits) == 3 * 24 * 3600 * 1000


def test_route_sets_not_before_to_the_rounded_due_time() -> None:
    """fw-not-before (epoch seconds) is when the countdown delivers: now + rounded delay."""
    route = route_for(0.25, NOW)
    assert route.exchange == names.SCHEDULE_EXCHANGE
    assert route.delay == pytest.approx(0.3)
    assert route.due_at == pytest.approx(NOW + 0.3)
    # epoch ms as an int: a float header would travel as a 32-bit float (a minute off)
    assert route.headers[names.NOT_BEFORE] == math.ceil(route.due_at * 1000)


def test_scheduled_keeps_an_unscheduled_envelope_and_exchange() -> None:
    """No delay: the same envelope to the same exchange."""
    envelope = Envelope("k", "t", b"{}", "k")
    assert scheduled(envelope, names.COMMANDS_EXCHANGE, None) == (
        envelope,
        names.COMMANDS_EXCHANGE,
    )


def test_scheduled_adds_the_countdown_headers_to_those_already_there() -> None:
    """A delay keeps the envelope's headers (tracestate) and adds the schedule's."""
    stamp = datetime.fromtimestamp(NOW, UTC)
    envelope = Envelope("k", "t", b"{}", "k", timestamp=stamp, headers={"tracestate": "a=1"})
    out, exchange = scheduled(envelope, names.COMMANDS_EXCHANGE, 1.5)
    assert exchange == names.SCHEDULE_EXCHANGE
    assert out.headers["tracestate"] == "a=1"
    assert out.headers[names.NOT_BEFORE] == math.ceil((NOW + 1.5) * 1000)
    assert out.body == envelope.body and out.message_id == "k"
