"""A worker's start-up checks read each queue against the argument set the declaration keeps
it with: queues of earlier framework versions are not reported as conflicts."""

from __future__ import annotations

from framework.consume.broker_checks import queue_problems
from framework.consume.startup_checks import declared_for
from framework.wire.topology import QueueSpec

CURRENT = {"x-queue-type": "quorum", "x-dead-letter-exchange": "q.moves", "x-delivery-limit": 10}
QUEUE = QueueSpec("q", CURRENT, fallback={"x-queue-type": "quorum"})


def test_a_queue_of_an_earlier_version_is_checked_against_what_it_was_declared_with() -> None:
    """Dead-lettering through the default exchange (older framework): accepted, no problem."""
    legacy = {"arguments": {**CURRENT, "x-dead-letter-exchange": ""}}
    assert declared_for(QUEUE, legacy) == legacy["arguments"]
    assert queue_problems("q", "W", declared_for(QUEUE, legacy), legacy) == []
    fallback = {"arguments": {"x-queue-type": "quorum"}}
    assert queue_problems("q", "W", declared_for(QUEUE, fallback), fallback) == []


def test_any_other_difference_is_checked_against_the_current_arguments() -> None:
    """A set no version declared, or a queue not there yet: the current arguments count."""
    other = {"arguments": {**CURRENT, "x-delivery-limit": 3}}
    assert declared_for(QUEUE, other) == CURRENT
    assert [p.code for p in queue_problems("q", "W", declared_for(QUEUE, other), other)] == [
        "queue-arguments"
    ]
    assert declared_for(QUEUE, None) == CURRENT
