"""Scaling arithmetic: how long a backlog takes to drain and how many replicas would drain it.

Pure functions of rates and depths, so autoscaling advice is tested without a broker.
"""

from __future__ import annotations

import math

INFINITE = math.inf


def drain_seconds(
    depth: int, publish_rate: float | None, deliver_rate: float | None
) -> float | None:
    """Seconds until `depth` waiting messages are gone at the current net deliver rate.

    0 for an empty queue, `math.inf` while the queue is not shrinking (arrivals at least
    as fast as deliveries), None when rates are unknown.
    """
    if depth <= 0:
        return 0.0
    if publish_rate is None or deliver_rate is None:
        return None
    net = deliver_rate - publish_rate
    if net <= 0:
        return INFINITE
    return depth / net


def suggested_replicas(
    *,
    backlog: int,
    arrival_rate: float | None,
    per_consumer_rate: float | None,
    target_drain: float,
    max_replicas: int | None = None,
) -> int | None:
    """Replicas needed to keep up with arrivals and drain `backlog` within `target_drain` s.

    capacity needed = arrival_rate + backlog / target_drain; replicas = ceil(that /
    per_consumer_rate). Returns None when no throughput has been observed yet (no consumer
    or no deliveries) unless there is nothing to do; 0 for an idle, empty queue.
    Idle consumers deliver only what arrives, so their measured rate is a lower bound of
    their capacity: for a queue that keeps up, the advice stays at the current count.
    """
    if target_drain <= 0:
        raise ValueError("target_drain must be positive")
    if arrival_rate is None:
        return None
    wanted = arrival_rate + max(backlog, 0) / target_drain
    if wanted <= 0:
        return 0
    if per_consumer_rate is None or per_consumer_rate <= 0:
        return None
    replicas = max(math.ceil(wanted / per_consumer_rate - 1e-9), 1)
    if max_replicas is not None:
        replicas = min(replicas, max_replicas)
    return replicas


def format_duration(seconds: float | None) -> str:
    """Render a drain time for a terminal: `0s`, `42s`, `3m20s`, `2h05m`, `∞`, `n/a`."""
    if seconds is None:
        return "n/a"
    if math.isinf(seconds):
        return "∞"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
