"""The hybrid arm on the simulated engine (daemons/sim/hybrid.py): the real rules, the real arm's results.

- `test_each_request_takes_the_path_the_real_rule_gives`: in a simulated hybrid run, each
  peer's first choice for a request and the view it made it on are kept; the real
  `peer_decides` on those inputs says warm (peer) or referred (coordinator), and the real
  `referred` turns the coordinator's answer into the decision carried out: requests.csv's
  `decided_by` and node must be what they say.
- `test_cold_starts_go_to_the_coordinator_and_warm_requests_stay_with_the_peers`: the
  workload of tests/hybrid/test_hybrid_run.py through `schedctl experiment run --engine sim`,
  with that test's assertions (cold -> coordinator, SERVE -> peer, never degraded).
- `test_a_killed_coordinator_loses_nothing`: the same run with the real test's kill at 3 s and
  restart at 8 s, and its assertions: every request ok, the peers degraded from the kill,
  recovered after the restart, the first Llama-2 (cold, coordinator down) loaded by a degraded
  peer, the first Llama-3 (after the restart) by the coordinator.
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path
from random import Random

import pytest

from cli.experiment.simrun import sim_config
from cli.experiment.spec import load_file
from daemons.coordinator.testing import schedctl
from daemons.core.messages import Error, Placement
from daemons.loadgen.workload import plan
from daemons.node import hybrid_mode
from daemons.node.gossip_mode import peer_decide
from daemons.policy import Decision, PlacementRequest, Refusal
from daemons.policy.hybrid import COORDINATOR, PEER, peer_decides
from daemons.sim import simulate
from daemons.sim.hybrid import SimHybridPeer
from daemons.sim.peer import Placing
from tests.hybrid.test_hybrid_run import EXPERIMENT, LLAMA2, LLAMA3, check_the_peers_follow_the_standby


def spec_file(tmp_path: Path, duration: float, faults: list[str], standby: bool = False) -> Path:
    config = tmp_path / "exp.toml"
    config.write_text(EXPERIMENT.format(duration=duration, faults=", ".join(f'"{f}"' for f in faults),
                                        standby=str(standby).lower()).replace("[experiment]",
                                                                              '[experiment]\nengine = "sim"'))
    return config


def run(tmp_path: Path, duration: float, faults: list[str],
        standby: bool = False) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    out = subprocess.run([schedctl(), "experiment", "run", "-c", str(spec_file(tmp_path, duration, faults, standby)),
                          "--results-dir", str(tmp_path / "results")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "decided by" in out.stdout
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    with open(run_dir / "requests.csv", newline="") as fh:
        requests = list(csv.DictReader(fh))
    with open(run_dir / "events.csv", newline="") as fh:
        events = list(csv.DictReader(fh))
    with open(run_dir / "schedule.csv", newline="") as fh:
        assert sorted(r["request_id"] for r in requests) == sorted(r["request_id"] for r in csv.DictReader(fh))
    return requests, events


def paths(requests: list[dict[str, str]], action: str) -> Counter[str]:
    return Counter(r["decided_by"] for r in requests if r["action"] == action)


def test_each_request_takes_the_path_the_real_rule_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_file(spec_file(tmp_path, 20, []))
    expected: dict[str, str] = {}  # request -> the path of its last decision, by the real rule
    placed: dict[str, str] = {}  # request -> the node of the coordinator's answer
    decided, referred = SimHybridPeer.decided, hybrid_mode.referred

    def spy_decided(self: SimHybridPeer, placing: Placing, request: PlacementRequest) -> Decision | Refusal | None:
        # The real peer's choice (GossipMode.choose's peer_decide) on this peer's view and dice, made
        # on a copy of the dice, and the real split on it: the path the real HybridMode takes.
        view, dice = self.view(), Random()
        dice.setstate(self.rng.getstate())
        choice = peer_decide(self.policy, view, request, dice, self.name, self.settings.admission)
        expected[placing.asked.request_id] = PEER if peer_decides(view, choice, request.model, request.exclude) \
            else COORDINATOR
        return decided(self, placing, request)

    def spy_referred(answer: Placement | Error) -> tuple[Decision | Refusal, int] | None:
        if isinstance(answer, Placement):
            placed[answer.request_id] = answer.node
        return referred(answer)

    monkeypatch.setattr(SimHybridPeer, "decided", spy_decided)
    monkeypatch.setattr("daemons.sim.hybrid.referred", spy_referred)
    result = simulate(sim_config(spec, "hybrid"), plan(spec.workload))
    assert len(result.records) > 20 and all(r.status == "ok" for r in result.records)
    by_path = Counter(r.decided_by for r in result.records)
    assert by_path[PEER] > 0 and by_path[COORDINATOR] > 0, by_path
    for rec in result.records:
        assert rec.decided_by == expected[rec.request_id], rec
        if rec.decided_by == COORDINATOR:  # the coordinator's placement, carried out
            assert rec.node == placed[rec.request_id], rec
    assert result.stats["degraded_spells"] == 0


def test_cold_starts_go_to_the_coordinator_and_warm_requests_stay_with_the_peers(tmp_path: Path) -> None:
    requests, events = run(tmp_path, 20, [])
    assert [r for r in requests if r["status"] != "ok"] == []
    cold, warm = paths(requests, "COLD_START"), paths(requests, "SERVE")
    assert set(cold) == {"coordinator"} and cold["coordinator"] >= 2  # OPT and Llama-2 at least
    assert set(warm) == {"peer"} and warm["peer"] >= 5
    assert {r["decided_by"] for r in requests} <= {"peer", "coordinator"}
    assert not [e for e in events if e["kind"].startswith("hybrid_")]  # never degraded


def test_a_killed_coordinator_loses_nothing(tmp_path: Path) -> None:
    requests, events = run(tmp_path, 16, ["3:kill:coordinator", "8:restart:coordinator"])
    assert [r for r in requests if r["status"] != "ok"] == []
    degraded = [float(e["t_s"]) for e in events if e["kind"] == "hybrid_degraded"]
    recovered = [float(e["t_s"]) for e in events if e["kind"] == "hybrid_recovered"]
    assert degraded and min(degraded) >= 3, events
    assert recovered and min(recovered) > 8 and max(recovered) < 13.6, events

    def first(model: str) -> dict[str, str]:
        return min((r for r in requests if r["model"] == model), key=lambda r: float(r["scheduled_s"]))

    assert (first(LLAMA2)["action"], first(LLAMA2)["decided_by"]) == ("COLD_START", "peer-degraded")
    assert (first(LLAMA3)["action"], first(LLAMA3)["decided_by"]) == ("COLD_START", "coordinator")
    down = [r for r in requests if 3 < float(r["scheduled_s"]) < 8 and r["action"] == "SERVE"]
    assert down and {r["decided_by"] for r in down} == {"peer"}  # warm requests kept being served meanwhile
    assert set(paths(requests, "SERVE")) == {"peer"}


def test_with_a_standby_the_peers_follow_it_after_the_kill_as_in_a_real_run(tmp_path: Path) -> None:
    """tests/hybrid/test_hybrid_run.py's standby run, simulated: the standby takes over, the peers
    follow its heartbeats (`Following`) and refer the next cold start to it."""
    requests, events = run(tmp_path, duration=16, faults=["3:kill:coordinator"], standby=True)
    check_the_peers_follow_the_standby(requests, events)
    assert [r for r in requests if r["status"] != "ok"] == []
    recovered = [e for e in events if e["kind"] == "hybrid_recovered"]
    assert recovered and all("coordinator=standby" in e["detail"] for e in recovered), recovered
