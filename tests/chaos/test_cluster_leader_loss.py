"""Scenario 8: a 3-node cluster loses the node holding the worker queue's leader mid-run.

A throwaway cluster `fwc1..3@localhost` (tests/chaos/cluster.py; the shared node
`rabbit@localhost` is never touched) holds the run's quorum queues, replicated on all three
nodes. The framework's Bus takes one URL, so every client reaches the cluster through a
failover proxy (tests/chaos/proxy.py with fallbacks) that connects each new link to the
first node that accepts: the producer prefers the leader's node (so it loses its
connection and fails over), each worker prefers a different follower, the test's admin
connection a follower. Mid-run the leader's node is stopped (`rabbitmqctl stop_app`, or
SIGKILL of its beam with `CHAOS_CLUSTER_FAULT=kill`); the followers elect a new leader and
the run completes with the invariant intact.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable

import pytest

from framework import names
from framework.testing import BrokerAdmin
from tests.chaos import ledger as ledger_mod
from tests.chaos.cluster import Cluster
from tests.chaos.harness import Run, Sender, check, finish, recovery, recovery_times, scale
from tests.chaos.proxy import FaultProxy

FAULT = os.environ.get("CHAOS_CLUSTER_FAULT", "stop_app")  # stop_app | kill


def failover_proxy(cluster: Cluster, order: list[int]) -> FaultProxy:
    """A proxy that sends each new link to the first node of `order` accepting it."""
    first, *rest = (cluster.nodes[i].amqp_port for i in order)
    return FaultProxy("127.0.0.1", first, [("127.0.0.1", port) for port in rest])


def handling_gap(run: Run, start: float, end: float) -> float:
    """The longest time between two consecutive handlings in [start, end]: how long the
    pipeline stood still around the fault."""
    conn = ledger_mod.connect(run.ledger.path)
    try:
        times = [row[0] for row in conn.execute(
            "SELECT at FROM handlings WHERE at BETWEEN ? AND ? ORDER BY at", (start, end))]
    finally:
        conn.close()
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@pytest.mark.timeout(scale(180, 600))
async def test_cluster_leader_node_lost_mid_run(own_broker_run: Callable[..., Run]) -> None:
    """Two workers and a producer keep going while the node holding the queue's leader
    goes down: every confirmed send is handled once in effect, nothing is dead-lettered,
    no worker dies."""
    run = own_broker_run("8-cluster-leader-loss")
    total = scale(1000, 5000)
    rng = random.Random()
    async with Cluster() as cluster:
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
        followers = [n.index for n in cluster.nodes if n.index != lead]
        producer_proxy = failover_proxy(cluster, [lead, *followers])
        worker_proxies = [failover_proxy(cluster, [followers[0], followers[1], lead]),
                          failover_proxy(cluster, [followers[1], followers[0], lead])]
        admin_proxy = failover_proxy(cluster, [*followers, lead])
        proxies = [producer_proxy, *worker_proxies, admin_proxy]
        for proxy in proxies:
            await proxy.start()
        try:
            async with BrokerAdmin.connect(admin_proxy.url(run.amqp_url)) as admin, \
                    run.bus(producer_proxy.url(run.amqp_url), publish_timeout=5.0) as bus:
                pool = run.pool(size=2, slot_env=[
                    {"AMQP_URL": p.url(run.amqp_url)} for p in worker_proxies])
                await pool.start()
                try:
                    sender = Sender(run, bus, concurrency=16, max_tries=60, retry_pause=0.5)
                    sending = asyncio.create_task(sender.send_many(
                        range(total), rate=total / 25.0,
                        vary=lambda _: {"work_ms": rng.randint(5, 30)}))
                    await asyncio.sleep(8.0)
                    fault_at = time.time()
                    if FAULT == "kill":
                        cluster.kill(leader)
                    else:
                        await cluster.stop_app(leader)
                    down_at = time.time()  # the node is down from here on
                    new_leader, election_s = await cluster.wait_new_leader(
                        run.queue, leader, via=cluster.nodes[followers[0]].name)
                    after = await cluster.queue_info(run.queue, cluster.nodes[followers[0]].name)
                    await sending
                    accounting = await finish(run, admin, pool, settle_timeout=scale(60, 300))
                finally:
                    await pool.stop()
        finally:
            for proxy in proxies:
                await proxy.close()
    run.figures.update(
        faults=f"{FAULT} of the leader's node {leader}",
        cluster_start_s=started_s,
        members=members,
        old_leader=leader,
        new_leader=new_leader,
        online_after=sorted(after.get("online", [])),
        fault_cmd_s=round(down_at - fault_at, 1),
        new_leader_seen_s=round(election_s, 1),
        handling_gap_max_s=round(handling_gap(run, fault_at - 1.0, down_at + 30.0), 2),
        links_by_port={name: {str(port): n for port, n in sorted(p.accepted_by.items())}
                       for name, p in zip(["producer", "worker-1", "worker-2", "admin"],
                                          proxies, strict=True)},
        send_errors=dict(sender.errors),
        **recovery(recovery_times(run, [down_at])),
    )
    check(run, accounting)
    assert not run.figures["dead_lettered"], run.figures["dead"]
    assert accounting.handled_once == total
    assert pool.exits() == [], "a worker process died when the leader's node went down"
    assert new_leader != leader
    # the producer really lost its node and failed over to a follower
    assert len(producer_proxy.accepted_by) >= 2, producer_proxy.accepted_by
