"""The demo's terminal output: the live queue table and the final summary (rich)."""

from __future__ import annotations

import math

from rich.table import Table

from framework.cli.demo.fleet import Fleet
from framework.cli.demo.tally import Tally, percentile
from framework.cli.demo.watch import QueueRow


def live_table(rows: list[QueueRow], fleet: Fleet, tally: Tally) -> Table:
    table = Table(title="queues", title_justify="left", expand=False)
    for column in ("queue", "ready", "consumers", "in retry", "DLQ"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for row in rows:
        table.add_row(
            row.name, str(row.ready), str(row.unacked_or_consumers), str(row.retry), str(row.dlq)
        )
    counts = tally.counts()
    retried = fleet.stat("retried")
    table.caption = (
        f"placed {len(tally.placed)}  paid {counts['paid']}  declined {counts['declined']}  "
        f"receipts {len(tally.receipts)}  retries {'-' if retried is None else retried}  "
        f"breaker {fleet.breaker_state()}"
    )
    return table


def _fmt(value: int | None) -> str:
    return "n/a (see service logs)" if value is None else str(value)


def summary_table(tally: Tally, fleet: Fleet, wall: float, sends: int) -> Table:
    counts = tally.counts()
    latencies = tally.latencies()
    reasons: dict[str, int] = {}
    for reason in tally.dead.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    dead = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    table = Table(title="demo summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("orders sent", f"{len(tally.sent_at)} (+{sends - len(tally.sent_at)} duplicate sends)"),
        ("orders placed", str(len(tally.placed))),
        ("paid", str(counts["paid"])),
        ("failed (declined)", str(counts["declined"])),
        ("dead-lettered", f"{len(tally.dead)}" + (f" ({dead})" if dead else "")),
        ("accounted for", f"{len(tally.accounted() & set(tally.sent_at))}/{tally.expected}"),
        ("receipts sent", str(len(tally.receipts))),
        ("retries (all services)", _fmt(fleet.stat("retried"))),
        ("duplicates suppressed", _fmt(fleet.stat("duplicates"))),
        ("breaker opened", _fmt(fleet.breaker_opened if fleet.breaker else None)),
        (
            "latency p50 / p99",
            f"{_ms(percentile(latencies, 50))} / {_ms(percentile(latencies, 99))}",
        ),
        ("wall time", f"{wall:.1f}s"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"
