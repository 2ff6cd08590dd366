"""`framework queues` and the scheduled-send countdown: the `fw.schedule` row."""

from __future__ import annotations

from framework.cli.queues import render
from framework.ops.queue_source import Snapshot
from framework.ops.queue_stats import QueueSample, backlog, group, schedule_row
from framework.wire import names


def test_schedule_row_sums_every_countdown_queue() -> None:
    """Ready and unacked messages of all fw.schedule.wait.* queues count as scheduled."""
    samples = [
        QueueSample(names.schedule_queue(100), ready=2, unacked=0),
        QueueSample(names.schedule_queue(409_600), ready=5, unacked=1),
        QueueSample("orders", ready=9, unacked=0),
    ]
    row = schedule_row(samples, "management")
    assert row is not None
    assert (row.name, row.scheduled, row.ready, row.retry, row.dlq) == (
        names.SCHEDULE_ROW,
        8,
        0,
        0,
        0,
    )
    assert backlog(row) == 8
    assert row.as_json()["scheduled"] == 8


def test_no_countdown_no_schedule_row() -> None:
    """A vhost where nobody scheduled a send has no fw.schedule row."""
    assert schedule_row([QueueSample("orders", ready=1)], "amqp") is None


def test_worker_rows_keep_their_keys_and_add_scheduled_last() -> None:
    """The contract keys stay first and unchanged; `scheduled` is only added (0)."""
    samples = [QueueSample("orders", 3, 0), QueueSample("orders.dlq", 0, 0)]
    [row] = group(samples, ["orders"], "management")
    data = row.as_json()
    assert list(data)[:6] == ["name", "ready", "unacked", "consumers", "retry", "dlq"]
    assert list(data)[-1] == "scheduled" and data["scheduled"] == 0


def test_table_has_a_sched_column() -> None:
    """The table adds `sched` (before the trend arrow) and shows the row's count."""
    row = schedule_row([QueueSample(names.schedule_queue(800), ready=4)], "amqp")
    assert row is not None
    table = render(Snapshot([row]), {})
    headers = [column.header for column in table.columns]
    assert headers[-2:] == ["sched", "±"]
    assert list(table.columns[-2].cells) == ["4"]
