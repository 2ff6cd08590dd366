"""The per-send cost of shedding by forecast (`FRAMEWORK_SHED_BY_FORECAST`), no broker.

    .venv/bin/python -m bench.shedding            # ~2 s

With shedding on, `Bus.send` asks its `LoadFollower` whether the command would wait past
its deadline before publishing: no broker round trip, a look-up in the latest reports.
This times that check alone (the rest of a send is unchanged), for a send with a ttl to a
queue with 1, 10 and 100 reporting replicas, and for a send without a deadline (which
returns at once). Compare with a confirmed send's own cost in bench/RESULTS.md
(publish, workload A: some tens of microseconds of client CPU per message).
"""

from __future__ import annotations

import time
import timeit

from framework.resilience.load_forecast import LoadReport
from framework.resilience.load_status import LoadFollower

TYPE = "bench.shedding.Job"
ROUNDS = 20_000


def follower_with(replicas: int) -> LoadFollower:
    """A follower that heard from `replicas` replicas of one queue, none refusing a 60 s ttl."""
    follower = LoadFollower("bench")
    now = time.monotonic()
    for i in range(replicas):
        report = LoadReport(
            queue="bench.shedding",
            replica=f"r{i}",
            types=(TYPE,),
            backlog=100,
            backlog_trend=0.0,
            in_flight=1,
            rate=50.0,
            interval=60.0,  # fresh for the whole run
        )
        follower.receive(report.model_dump_json().encode(), now)
    return follower


def microseconds_per_check(follower: LoadFollower, ttl: float | None) -> float:
    seconds = timeit.timeit(lambda: follower.refuse_if_late(TYPE, "key", None, ttl), number=ROUNDS)
    return seconds / ROUNDS * 1e6


def main() -> None:
    print("check before each send (shedding on)     us/send")
    no_deadline = microseconds_per_check(follower_with(1), None)
    print(f"  no deadline                             {no_deadline:7.2f}")
    for replicas in (1, 10, 100):
        cost = microseconds_per_check(follower_with(replicas), 60.0)
        print(f"  ttl, {replicas:3d} replica(s) reporting         {cost:7.2f}")


if __name__ == "__main__":
    main()
