"""A standby coordinator on the simulated engine: the real test's spec and checks
(tests/experiment/test_coordinator_faults.py), run with `--engine sim`.

The simulated pair runs the real rules (daemons/coordinator/failover.py `Failover`: Binary Star,
witness votes, epochs; daemons/node/fencing.py: the nodes' epoch fence and witness vote;
daemons/loadgen/coordinators.py: which coordinator the load generator asks), so the same
assertions hold: the standby takes over after the detection time, a paused primary that wakes
is fenced and steps down, and every request ends in exactly one recorded outcome.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from daemons.loadgen.workload import PlannedRequest
from daemons.sim import NodeKind, SimConfig, SimFault, simulate
from daemons.sim.engine import Simulation
from tests.experiment.test_coordinator_faults import (
    TAKEOVER_EARLIEST_S,
    check_a_paused_primary_is_deposed,
    check_no_takeover_without_a_standby,
    check_takeover_after_a_kill,
    kill_with_standby,
    kill_without_standby,
    pause_with_standby,
)

SMALL = "facebook/opt-125m"
KIND = NodeKind("a100-80gb", "ssd", (SMALL,), 16384, 0.5)


def test_a_killed_primary_is_replaced_by_the_standby_as_in_a_real_run(tmp_path: Path) -> None:
    took = check_takeover_after_a_kill(*kill_with_standby(tmp_path, engine="sim"))
    assert took >= TAKEOVER_EARLIEST_S


def test_a_paused_primary_is_deposed_and_fenced_as_in_a_real_run(tmp_path: Path) -> None:
    check_a_paused_primary_is_deposed(*pause_with_standby(tmp_path, engine="sim"))


def test_without_a_standby_the_unplaced_requests_time_out_as_in_a_real_run(tmp_path: Path) -> None:
    check_no_takeover_without_a_standby(*kill_without_standby(tmp_path, engine="sim"))


def test_a_placement_of_the_deposed_epoch_is_refused_by_the_node_and_placed_again() -> None:
    """The primary is stopped (SIGSTOP) just as it decides r01: its placement, in epoch 1,
    leaves only when it continues, after the standby took epoch 2 and told the nodes. The
    load generator (which has seen no epoch 2 yet) follows it; the node refuses it
    `stale_epoch`, and the request is placed again by the standby."""
    latency = SimConfig.latency_s
    schedule = [PlannedRequest("r00", 0.5, SMALL, 60, 10),
                PlannedRequest("r01", 2.0 - latency - 5e-6, SMALL, 60, 10)]  # in the round the pause stops
    config = SimConfig(mode="centralized", nodes=[("node-0", KIND), ("node-1", KIND)], policy="round-robin",
                       standby=True, failover_after_s=3.0, coordinator_timeout_s=0.0,
                       faults=(SimFault(2.0, "pause", "coordinator", 6.0),))
    result = simulate(config, schedule)
    first, fenced = result.records
    assert (first.status, first.coordinator, first.epoch) == ("ok", "coordinator", 1)
    assert (fenced.status, fenced.coordinator, fenced.epoch) == ("ok", "standby", 2), fenced
    assert fenced.reroutes == 1 and fenced.placed_s is not None and fenced.placed_s > 8.0
    steps = [(e.kind, e.target) for e in result.events if e.kind in ("coordinator_active", "coordinator_passive")]
    # the primary's and the standby's start, the takeover, and the primary stepping down when it continues
    assert steps[:4] == [("coordinator_active", "coordinator"), ("coordinator_passive", "standby"),
                         ("coordinator_active", "standby"), ("coordinator_passive", "coordinator")], steps


def test_a_hybrid_peer_refused_by_a_passive_coordinator_refers_to_its_partner() -> None:
    """HybridMode._refer's rule: a peer process that starts while the primary is passive (it
    follows the first coordinator until a heartbeat says otherwise) is answered `not_active`,
    and refers the cold start to the standby at once instead of deciding it itself."""
    other = "meta-llama/Llama-2-7b-hf"
    kind = NodeKind("a100-80gb", "dram", (SMALL, other), 16384, 0.5)
    nodes = [(f"node-{k}", kind) for k in range(3)]
    # the primary is stopped 2 s - 6 s (the standby takes over at 5 s, beating on whole seconds);
    # node-0's process restarts at 6.5 s and is back at 6.7 s: it follows the deposed primary until 7 s
    entry_node_0 = next(f"x{k}" for k in range(100) if zlib.crc32(f"x{k}".encode()) % 3 == 0)
    schedule = [PlannedRequest(entry_node_0, 6.8, other, 60, 10)]
    faults = (SimFault(2.0, "pause", "coordinator", 4.0), SimFault(6.5, "restart", "node-0", 0.2))
    sim = Simulation(SimConfig(mode="hybrid", nodes=nodes, standby=True, failover_after_s=2.0, faults=faults),
                     schedule)
    (record,) = sim.run().records
    assert (record.status, record.decided_by, record.action) == ("ok", "coordinator", "COLD_START"), record
    assert sim.coordinators["standby"].decisions == 1 and sim.coordinators["coordinator"].decisions == 0
