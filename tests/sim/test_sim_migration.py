"""Live migration on the simulated engine: a `migrate` fault and the coordinator's rebalancer
move running requests by the agent's protocol (daemons/node/migration.py rules), and the run
writes what a real run writes (tests/experiment/test_faults.py's migrate test, same spec)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from daemons.coordinator.testing import schedctl
from daemons.gossip.config import GossipConfig
from daemons.loadgen.recorder import RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.rundir.requests import OK
from daemons.sim import NodeKind, SimConfig, SimFault, SimResult, simulate
from daemons.sim.batch import Seq, SimBatch
from daemons.sim.clock import Clock
from tests.experiment.test_faults import MIGRATING, check_one_migration
from tests.sim.test_batch import COEF, LIMITS

SMALL = "facebook/opt-125m"
KIND = NodeKind("a100-80gb", "ssd", (SMALL,), 16384, 0.5)
TWO = [("node-0", KIND), ("node-1", KIND)]
# what the source's Done carries after a migration (daemons/node/server.py `_hand_over`)
MIGRATION_TIMINGS = {"migration_resume_s", "migration_gap_s", "migration_total_s", "migration_tokens",
                     "migration_rounds"}


@pytest.mark.parametrize("scheduler", ["centralized", "gossip"])
def test_a_simulated_migrate_fault_writes_what_a_real_run_writes(tmp_path: Path, scheduler: str) -> None:
    """The real test's spec and expectations, with `--engine sim` (and the gossip arm too)."""
    config = tmp_path / "exp.toml"
    config.write_text(MIGRATING)
    out = subprocess.run([schedctl(), "experiment", "run", "--engine", "sim", "-c", str(config), "--scheduler",
                          scheduler, "--results-dir", str(tmp_path / "results")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    moved, migrated, summary = check_one_migration(run_dir)
    assert int(migrated.fields()["tokens"]) == moved.migration_tokens
    with open(run_dir / "requests.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["request_id"] == moved.request_id)
    assert all(f'"{key}"' in row["server_timings"] for key in MIGRATION_TIMINGS), row["server_timings"]
    assert summary["engine"] == "sim"


def skewed(long_tokens: int = 1500) -> list[PlannedRequest]:
    """Round-robin over two nodes: node-0 gets the long requests, node-1 the short ones."""
    warm = [PlannedRequest("w0", 0.0, SMALL, 10, 5), PlannedRequest("w1", 0.01, SMALL, 10, 5)]
    return warm + [PlannedRequest(f"r{k:02d}", 1.0 + 0.05 * k, SMALL, 100, long_tokens if k % 2 == 0 else 30)
                   for k in range(12)]


def run(schedule: list[PlannedRequest], **settings: object) -> SimResult:
    return simulate(SimConfig(mode="centralized", nodes=TWO, policy="round-robin", **settings), schedule)  # type: ignore[arg-type]


def whole(result: SimResult) -> list[RequestRecord]:
    assert all(r.status == OK and r.tokens == r.max_new_tokens for r in result.records)
    return [r for r in result.records if r.migrated_to]


def test_the_rebalancer_moves_a_request_off_the_loaded_node() -> None:
    """`--rebalance`: the coordinator's MovePlan sees node-0 hold more, orders a move, and the
    moved request finishes on node-1; without it nothing moves."""
    result = run(skewed(), rebalance=True)
    moved = whole(result)
    assert moved and all((r.migrated_from, r.migrated_to, r.node) == ("node-0", "node-1", "node-1") for r in moved)
    assert all(set(r.server_timings) >= MIGRATION_TIMINGS for r in moved)
    migrated = [e for e in result.events if e.kind == "migrated"]
    assert sorted(e.detail.split(";")[1] for e in migrated) == sorted(f"request={r.request_id}" for r in moved)
    assert result.stats["migration_orders"] >= len(moved)
    assert not whole(run(skewed()))


def test_a_destination_lost_after_the_switch_hands_the_request_back() -> None:
    """The destination dies once it generates the request: after SILENCE_S the source resumes
    it from the last token the client has (a Handover back), and it still ends whole, once."""
    schedule = [PlannedRequest(f"r{k}", 0.3 * k, SMALL, 100, 4000) for k in range(6)]
    result = run(schedule, faults=(SimFault(3.0, "migrate", "node-0"), SimFault(3.5, "kill", "node-1")))
    [moved] = whole(result)
    assert (moved.migrated_from, moved.migrated_to, moved.node, moved.handovers) == ("node-0", "node-1", "node-0", 2)
    assert not [e for e in result.events if e.kind == "migrated"]
    assert result.stats["migrations_resumed_here"] == 1


def test_a_destination_lost_before_the_switch_leaves_the_request_where_it_is() -> None:
    schedule = [PlannedRequest(f"r{k}", 0.3 * k, SMALL, 100, 4000) for k in range(6)]
    result = run(schedule, faults=(SimFault(3.0, "migrate", "node-0"), SimFault(3.0, "kill", "node-1")))
    assert not whole(result)  # no Handover: the client never heard of it
    assert result.stats["migrations_abandoned"] == 1


def test_the_switch_stops_a_request_at_its_next_token() -> None:
    """batch.py `stop`: the tokens before the step under way are kept, that step's is dropped
    (the destination generates it again), and the batch goes on without the request."""
    clock = Clock(GossipConfig.preset("lan"), 0, (0.0005, 0.0005))
    batch = SimBatch(clock, COEF, LIMITS)
    stopped: list[tuple[int, float]] = []
    done: list[int] = []
    moving = Seq(100, 500, lambda t: None, lambda t, n: done.append(n))
    staying = Seq(100, 200, lambda t: None, lambda t, n: done.append(n))
    batch.submit(moving)
    batch.submit(staying)
    asked_at: list[tuple[float, int]] = []

    def switch() -> None:
        asked_at.append((clock.now, batch.tokens(moving)))
        batch.stop(moving, lambda kept, last_t: stopped.append((kept, last_t)))

    clock.at(0.3, switch)
    clock.run_until(20.0)
    [(kept, last_t)] = stopped
    [(t, tokens)] = asked_at
    assert kept == tokens > 0 and last_t <= t
    assert done == [200] and batch.kv_used == 0 and batch.in_flight == 0


def test_a_policys_migrate_is_made_room_for_by_live_migrations() -> None:
    """startup-optimal on two 24 GB GPUs that each fit one 7-8B model, both busy with one: a
    request for the other model is placed MIGRATE, the coordinator moves node-0's requests to
    node-1 (MovePlan.room) and loads it on node-0 at once; with live migration off it waits
    for the running requests to end."""
    llama2, llama3 = "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"
    kind = NodeKind("a10g-24gb", "ssd", (llama2, llama3), 16384, 0.5)
    schedule = [PlannedRequest(f"a{k}", 0.1 * k, llama2, 100, 3000) for k in range(4)]
    schedule.append(PlannedRequest("b0", 25.0, llama3, 100, 50))

    def simulated(live_migration: bool) -> SimResult:
        config = SimConfig(mode="centralized", nodes=[("node-0", kind), ("node-1", kind)], policy="startup-optimal",
                           live_migration=live_migration, timeout_s=300)
        return simulate(config, schedule)

    on, off = simulated(True), simulated(False)
    moved = whole(on)
    assert moved and {(r.migrated_from, r.migrated_to) for r in moved} == {("node-0", "node-1")}
    assert on.stats["migration_orders"] == len(moved) == on.stats["migrations_migrated"]
    [b_on] = [r for r in on.records if r.request_id == "b0"]
    [b_off] = [r for r in off.records if r.request_id == "b0"]
    assert not whole(off) and off.stats["migration_orders"] == 0
    assert b_on.first_token_s is not None and b_off.first_token_s is not None
    assert b_on.first_token_s - 25.0 < 10.0 < b_off.first_token_s - 25.0  # a load, not the others' whole run
