"""Grouping queue samples into worker rows, filters and trend arrows."""

from __future__ import annotations

import json

import pytest

from framework.ops.queue_stats import (
    QueueSample,
    backlog,
    group,
    matches,
    trend,
    worker_queue_names,
)

SAMPLES = [
    QueueSample("orders", ready=7, unacked=2, consumers=3, publish_rate=4.0, deliver_rate=6.0),
    QueueSample("orders.dlq", ready=2, unacked=0),
    QueueSample("orders.retry.1s", ready=1, unacked=0),
    QueueSample("orders.retry.4s", ready=3, unacked=0),
    QueueSample("billing", ready=0, unacked=0),
    QueueSample("billing.dlq", ready=0, unacked=0),
    QueueSample("some.other.queue", ready=5, unacked=0),
]


def test_worker_queues_are_those_with_a_dlq() -> None:
    """Companions and foreign queues are not rows of their own."""
    assert worker_queue_names(s.name for s in SAMPLES) == ["billing", "orders"]


def test_row_folds_in_retry_tiers_and_dlq() -> None:
    """retry is the sum of the tiers, dlq the DLQ's depth, drain and replicas computed."""
    (row,) = group(SAMPLES, ["orders"], "management")
    assert (row.ready, row.unacked, row.consumers, row.retry, row.dlq) == (7, 2, 3, 4, 2)
    assert row.drain_seconds == pytest.approx(3.5)  # 7 / (6 - 4)
    assert row.suggested_replicas == 3  # (4 + 7/60) / (6/3) -> 2.06 -> 3


def test_json_has_contract_keys_and_no_infinity() -> None:
    """The --json object starts with the contract keys and stays valid JSON when growing."""
    growing = [
        QueueSample("q", ready=5, unacked=0, consumers=1, publish_rate=9.0, deliver_rate=1.0),
        QueueSample("q.dlq", ready=0),
    ]
    (row,) = group(growing, ["q"], "management")
    data = row.as_json()
    assert list(data)[:6] == ["name", "ready", "unacked", "consumers", "retry", "dlq"]
    assert data["drain"] == "∞" and data["drain_seconds"] is None
    json.dumps(data, allow_nan=False)


def test_fallback_rows_mark_rates_unavailable() -> None:
    """Passive declares give depth and consumers only."""
    (row,) = group([QueueSample("q", ready=3, consumers=1)], ["q"], "amqp")
    assert row.unacked is None and not row.rates_available
    assert row.drain == "n/a" and row.suggested_replicas is None and row.dlq == 0


def test_missing_worker_queue_is_an_error() -> None:
    """Grouping a queue that was not sampled raises KeyError."""
    with pytest.raises(KeyError):
        group(SAMPLES, ["nope"], "management")


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("orders", None, True),
        ("orders", "ord", True),
        ("billing", "ord", False),
        ("orders", "ord*", True),
        ("my.orders", "ord*", False),
        ("t.abc.1", "t.*.1", True),
    ],
)
def test_filter_is_glob_or_substring(name: str, pattern: str | None, expected: bool) -> None:
    """--filter: glob when it has wildcards, else substring."""
    assert matches(name, pattern) is expected


@pytest.mark.parametrize(
    ("previous", "current", "arrow"),
    [
        (None, 5, "·"),
        (3, 5, "↑"),
        (5, 3, "↓"),
        (4, 4, "→"),
    ],
)
def test_trend_arrows(previous: int | None, current: int, arrow: str) -> None:
    """The arrow compares the backlog with the previous refresh."""
    assert trend(previous, current) == arrow


def test_backlog_counts_ready_unacked_and_retry() -> None:
    """What the trend follows: everything not yet done."""
    (row,) = group(SAMPLES, ["orders"], "management")
    assert backlog(row) == 7 + 2 + 4
