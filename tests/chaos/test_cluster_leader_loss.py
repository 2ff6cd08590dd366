"""Scenario 8: a 3-node cluster loses the node holding the worker queue's leader mid-run.

A throwaway cluster of the broker under test (tests/chaos/cluster.py: 3.10 `fwc1..3`, or
4.0 `rabbit4a..c` from the scripts/broker4 root; the shared nodes are never touched) holds
the run's quorum queues, replicated on all three nodes. No proxy: every client is given all
three node URLs (AMQP_URL as a comma-separated list) and fails over by itself. The producer
and worker 1 list the leader's node first, so they are connected to it and lose it; worker 2
lists a follower first and keeps going. Mid-run the leader's node is stopped
(`rabbitmqctl stop_app`), or in the second case its beam is SIGKILLed; the followers elect a
new leader, the producer and worker 1 reconnect to a surviving node, and the run completes
with the invariant intact. Recorded: the time from the node loss to the first message
handled again by worker 1 (the one that lost its node): its longest pause in handling around
the fault (`lost_worker_gap_s`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from framework.testing import BrokerAdmin
from framework.wire import names
from tests.chaos import ledger as ledger_mod
from tests.chaos.cluster import Cluster, cluster_for
from tests.chaos.harness import Run, Sender, check, finish, recovery, recovery_times, scale

# a chaos scenario starts processes and waits out faults: far past the 30 s default
pytestmark = pytest.mark.timeout(scale(300, 1200))


def node_urls(cluster: Cluster, order: list[int]) -> str:
    """AMQP_URL for a client that tries the nodes in `order`."""
    return ",".join(cluster.url(i) for i in order)


def handling_gap(run: Run, start: float, end: float, pid: int | None = None) -> float:
    """The longest time between two consecutive handlings in [start, end] (by process `pid`
    only, if given): how long the pipeline, or that worker, stood still around the fault."""
    query = "SELECT at FROM handlings WHERE at BETWEEN ? AND ?"
    params: tuple[float, ...] = (start, end)
    if pid is not None:
        query, params = query + " AND pid = ?", (*params, pid)
    conn = ledger_mod.connect(run.ledger.path)
    try:
        times = [row[0] for row in conn.execute(query + " ORDER BY at", params)]
    finally:
        conn.close()
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def handled_after(run: Run, pid: int, moment: float) -> bool:
    """Whether process `pid` handled anything after `moment`."""
    conn = ledger_mod.connect(run.ledger.path)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM handlings WHERE pid = ? AND at > ?", (pid, moment)
        ).fetchone()
    finally:
        conn.close()
    return bool(row[0])


def reconnected_ports(log_dir: Path, index: int) -> list[int]:
    """The node ports worker `index` logged reconnecting to (`bus.reconnected` url)."""
    ports = []
    for log in sorted(log_dir.glob(f"worker-{index}-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if '"bus.reconnected"' not in line:
                continue
            port = urlsplit(json.loads(line).get("url", "")).port
            if port is not None:
                ports.append(port)
    return ports


@pytest.mark.parametrize("fault", ["stop_app", "kill"])
@pytest.mark.timeout(scale(240, 600))
async def test_cluster_leader_node_lost_mid_run(
    own_broker_run: Callable[..., Run], fault: str
) -> None:
    """A producer and a worker connected to the node holding the queue's leader, given all
    three node URLs, fail over to a surviving node when it goes down: every confirmed send
    is handled once in effect, nothing is dead-lettered, no worker dies."""
    run = own_broker_run(f"8-cluster-leader-loss-{fault}")
    total = scale(1000, 5000)
    rng = random.Random()
    async with cluster_for() as cluster:
        started_s = round(run.elapsed(), 1)
        run.amqp_url = cluster.url(0)
        run.configure(AMQP_URL=cluster.url(0))
        # declared through node 1; the leader lands where the broker puts it (client-local)
        async with run.bus(cluster.url(0)) as declaring:
            await declaring.declare(run.worker_cls)
        via = cluster.nodes[0].name
        info = await cluster.queue_info(run.queue, via)
        members = sorted(info["members"])
        assert members == sorted(n.name for n in cluster.nodes), info  # on all three
        for queue in (names.dlq_name(run.queue), *run.queues[1:]):
            assert len((await cluster.queue_info(queue, via))["members"]) == 3, queue
        leader = str(info["leader"])
        lead = cluster.node(leader).index
        f0, f1 = [n.index for n in cluster.nodes if n.index != lead]
        survivors = {cluster.nodes[f0].amqp_port, cluster.nodes[f1].amqp_port}
        async with (
            BrokerAdmin.connect(cluster.url(f0)) as admin,
            run.bus(node_urls(cluster, [lead, f0, f1]), publish_timeout=5.0) as bus,
        ):
            assert urlsplit(bus.masked_url).port == cluster.nodes[lead].amqp_port
            pool = run.pool(
                size=2,
                slot_env=[
                    {"AMQP_URL": node_urls(cluster, [lead, f1, f0])},  # loses its node
                    {"AMQP_URL": node_urls(cluster, [f0, f1, lead])},
                ],
            )
            await pool.start()
            try:
                lost_worker = pool.pid(0)
                sender = Sender(run, bus, concurrency=16, max_tries=60, retry_pause=0.5)
                sending = asyncio.create_task(
                    sender.send_many(
                        range(total),
                        rate=total / 25.0,
                        vary=lambda _: {"work_ms": rng.randint(5, 30)},
                    )
                )
                await asyncio.sleep(8.0)
                fault_at = time.time()
                if fault == "kill":
                    cluster.kill(leader)
                else:
                    await cluster.stop_app(leader)
                down_at = time.time()  # the node is down from here on
                new_leader, election_s = await cluster.wait_new_leader(
                    run.queue, leader, via=cluster.nodes[f0].name
                )
                after = await cluster.queue_info(run.queue, cluster.nodes[f0].name)
                await sending
                accounting = await finish(run, admin, pool, settle_timeout=scale(60, 300))
            finally:
                await pool.stop()
            producer_port = urlsplit(bus.masked_url).port
        handles_again = handled_after(run, lost_worker, down_at)
        worker_ports = reconnected_ports(run.tmp / "logs", 0)
    run.figures.update(
        faults=f"{fault} of the leader's node {leader}",
        broker=cluster.install.name if cluster.install else "",
        cluster_start_s=started_s,
        members=members,
        old_leader=leader,
        new_leader=new_leader,
        online_after=sorted(after.get("online", [])),
        fault_cmd_s=round(down_at - fault_at, 1),
        new_leader_seen_s=round(election_s, 1),
        # node loss -> first message handled again by the worker that was on that node
        lost_worker_gap_s=round(
            handling_gap(run, fault_at - 1.0, down_at + 30.0, pid=lost_worker), 2
        ),
        handling_gap_max_s=round(handling_gap(run, fault_at - 1.0, down_at + 30.0), 2),
        producer_now_on=producer_port,
        lost_worker_reconnected_to=worker_ports,
        send_errors=dict(sender.errors),
        **recovery(recovery_times(run, [down_at])),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    assert pool.exits() == [], "a worker process died when the leader's node went down"
    assert new_leader != leader
    # the producer and worker 1 really lost their node and moved to a surviving one
    assert producer_port in survivors, bus.masked_url
    assert worker_ports and set(worker_ports) <= survivors, worker_ports
    assert handles_again, "the worker that lost its node never handled again"
