"""Which acks to send: the contiguous prefix at once, the rest one by one (pure)."""

from __future__ import annotations

from framework.acks import AckPlan, plan_acks


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
