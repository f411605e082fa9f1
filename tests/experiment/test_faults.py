"""Fault schedules, recovery metrics and retries: parsing, bookkeeping, and short runs with kills."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import psutil
import pytest

from cli.experiment.faults import Fault, parse_fault, parse_faults, resolve_targets
from cli.experiment.spec import ExperimentSpec, from_dict
from cli.report.recovery import recoveries
from daemons.bus.envelope import Envelope
from daemons.core.errors import ConfigError
from daemons.core.messages import Done, Error, Placement
from daemons.loadgen.recorder import Recorder
from daemons.loadgen.schedule import read_schedule_csv
from daemons.loadgen.workload import PlannedRequest
from daemons.node.testing import schedctl
from daemons.rundir import (
    ERROR,
    OK,
    RECOVERY,
    Event,
    Recovery,
    RequestRow,
    read_events,
    read_recoveries,
    read_requests,
)


def test_fault_text_parses() -> None:
    assert parse_fault("5:kill:node-1") == Fault(5.0, "kill", "node-1")
    assert parse_fault("4.5s:pause:random-node:6") == Fault(4.5, "pause", "random-node", 6.0)
    assert parse_fault("2:restart:coordinator") == Fault(2.0, "restart", "coordinator")
    assert [f.at_s for f in parse_faults(["9:stop:node-0", "1:kill:node-1"])] == [1.0, 9.0]
    assert str(parse_fault("4:pause:node-0:6")) == "4:pause:node-0:6"
    assert parse_fault("3:migrate:node-0") == Fault(3.0, "migrate", "node-0")


@pytest.mark.parametrize("text", ["5:kill", "x:kill:node-1", "5:explode:node-1", "5:kill:gpu-1",
                                  "5:pause:node-1", "5:kill:node-1:3", "-1:kill:node-1", "5:partition:node-1",
                                  "5:migrate:coordinator", "5:migrate:node-1:2"])
def test_bad_fault_text_is_a_config_error_naming_the_format(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fault(text)
    assert "fault" in str(err.value) and text in str(err.value)


def test_faults_round_trip_through_the_manifest_and_check_targets() -> None:
    spec = ExperimentSpec(faults=("3:kill:node-1", "5:pause:random-node:4"), schedulers=("centralized",))
    assert from_dict(spec.to_dict(), "manifest") == spec
    with pytest.raises(ConfigError, match=r"node-0\.\.node-3"):
        ExperimentSpec(faults=("3:kill:node-9",))
    with pytest.raises(ConfigError, match="no coordinator"):
        ExperimentSpec(faults=("3:kill:coordinator",))  # both schedulers: gossip has none
    picked = resolve_targets(spec.fault_plan, ["node-0", "node-1"], seed=1)
    assert picked == resolve_targets(spec.fault_plan, ["node-0", "node-1"], seed=1)
    assert picked[1].target in ("node-0", "node-1")


def _req(i: int, t: float) -> PlannedRequest:
    return PlannedRequest(f"r{i}", t, "m", 10, 5)


def test_recorder_retries_a_failed_node_then_gives_up() -> None:
    rec = Recorder([_req(0, 0.0), _req(1, 0.0)], timeout_s=60, mode="centralized", retries=1,
                   attempt_timeout_s=2.0)
    a, b = rec.records
    rec.on_sent(a, 0.0)
    rec.on_sent(b, 0.0)
    rec.on_reply(Envelope("placement", "coord", "r0", Placement("r0", "node-1", "tcp://x:1", "SERVE", 0, "")),
                 0.1)
    rec.on_reply(Envelope("error", "node-1", "r0", Error("r0", "backend_died", "gone", "node-1")), 0.5)
    assert rec.retry_due == [a] and a.failed_nodes == ["node-1"] and not a.status
    rec.retry_due.clear()
    rec.on_resent(a, 0.6)
    assert a.attempts == 2 and a.node == "" and a.placed_s is None
    rec.on_reply(Envelope("error", "node-0", "r0", Error("r0", "backend_died", "gone", "node-0")), 0.7)
    assert a.status == ERROR and rec.retry_due == []  # no retry left: one outcome, an error
    # b: silent past attempt_timeout_s -> retried once, then its Done decides
    rec.check_attempts(1.9)
    assert rec.retry_due == []
    rec.check_attempts(2.1)
    assert rec.retry_due == [b]
    rec.retry_due.clear()
    rec.on_resent(b, 2.1)
    rec.on_reply(Envelope("done", "node-0", "r1", Done("r1", "node-0", 5, "length", "SERVE", 0, {})), 2.5)
    assert b.status == OK and b.attempts == 2
    assert rec.finished == 2 and rec.outcomes[OK] == 1


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def test_recovery_metrics_from_files(tmp_path: Path) -> None:
    cols = ["request_id", "scheduled_s", "sent_s", "first_token_s", "done_s", "action", "tokens", "status", "node",
            "failed_nodes"]

    def row(t: float, done: float, ttft: float, failed: str = "") -> list[object]:
        return [f"r{t}", t, t, t + ttft, done, "SERVE", 2, "ok", "node-0", failed]

    rows = [row(t, t + 0.2, 0.1) for t in (0.0, 1.0, 2.0)]
    rows.append(row(2.5, 9.0, 6.4, "node-1"))  # in flight on node-1 at the fault
    rows.append(row(4.0, 10.0, 6.0, "node-1"))  # placed on the dead node, retried
    rows += [row(float(t), t + 0.2, 0.1) for t in range(7, 17)]
    _write(tmp_path / "requests.csv", cols, rows)
    _write(tmp_path / "events.csv", ["t_s", "kind", "target", "detail"],
           [[3.0, "fault", "node-1", "kind=kill"], [6.2, "node_dead", "node-1", ""],
            [6.9, "silent", "node-1", ""]])
    (found,) = recoveries(read_requests(tmp_path / "requests.csv"), read_events(tmp_path / "events.csv"))
    assert found.detection_s == pytest.approx(3.2)
    assert found.drain_s == pytest.approx(6.0)
    # Trailing 10 s windows wholly after the fault: the slow retry scheduled at 4.0 holds p99
    # over the bar until it leaves the window at 14.0 (a forward window said 4.0, from 7.0 on).
    assert found.recovery_s == pytest.approx(11.0)
    assert (found.t_s, found.target, found.fault, found.recovered) == (3.0, "node-1", "kill", True)


# ----- short runs on a real local cluster ---------------------------------------------------------

EXPERIMENT = """
[experiment]
name = "faults"
scheduler = "{scheduler}"
timeout_s = 60
attempt_timeout_s = 6
faults = [{faults}]
[workload]
duration_s = {duration}
rps = 2
cv = 1
seed = 7
models = ["facebook/opt-125m"]
prompt_tokens = "lognormal:mean=100,median=80,max=300"
output_tokens = "lognormal:mean=30,median=20,max=60"
[[nodes]]
count = {nodes}
models = ["facebook/opt-125m"]
init_s = 1.0
"""
# Detection bounds: the coordinator declares a node dead after dead_after_s = 3 s of silence
# and nodes publish every 1 s; the collector checks silence (3 s) once a second.
COORDINATOR_BOUND_S = 3.0 + 1.0 + 0.5
COLLECTOR_BOUND_S = 3.0 + 1.0 + 1.0 + 0.5
# Gossip peers, LAN preset (probe period T = 1 s), N = 3: each survivor probes the other two
# round-robin over a reshuffled list, so it probes the dead one within 2(N - 1) - 1 periods
# and suspects it when that probe's period ends: first SUSPECT <= 2(N - 1)·T + 0.5 s of slack
# (a peer whose event loop lags scales T by its local health, which this slack absorbs only
# up to a point). Suspicion timeout at N = 3: min = 4·max(1, log10 3)·T = 4 s, with no
# confirmations to wait for (K = 0 below N = 4): the first DEAD comes 4 s (+0.5 s) after the
# first SUSPECT, so a kill at 5 s is declared dead by 5 + 4.5 + 4.5 = 14 s, within the run.
SUSPECT_BOUND_S = 2 * (3 - 1) * 1.0 + 0.5
SUSPICION_S = 4.0 + 0.5
VERDICTS = ("suspect", "dead", "alive")


def our_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def run_with_faults(tmp_path: Path, scheduler: str, faults: list[str],
                    nodes: int = 2, duration: float = 12) -> tuple[Path, list[dict[str, str]]]:
    config = tmp_path / "exp.toml"
    config.write_text(EXPERIMENT.format(scheduler=scheduler, faults=", ".join(f'"{f}"' for f in faults),
                                        nodes=nodes, duration=duration))
    before = our_processes()
    out = subprocess.run([schedctl(), "experiment", "run", "-c", str(config), "--results-dir",
                          str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert our_processes() <= before  # the killed, paused and surviving processes are all gone
    (run_dir,) = (tmp_path / "results").iterdir()
    planned = read_schedule_csv(run_dir / "schedule.csv")
    with open(run_dir / "requests.csv", newline="") as fh:
        recorded = list(csv.DictReader(fh))
    # zero lost: one row per planned request, each with exactly one outcome, all served
    assert sorted(r["request_id"] for r in recorded) == sorted(p.request_id for p in planned)
    assert [r["status"] for r in recorded] == ["ok"] * len(planned), [r["error"] for r in recorded]
    assert (run_dir / "recovery.png").stat().st_size > 0  # the fault timeline of a run with faults
    with open(run_dir / "events.csv", newline="") as fh:
        return run_dir, list(csv.DictReader(fh))


def first(events: list[dict[str, str]], kind: str, target: str) -> float:
    return min(float(e["t_s"]) for e in events if e["kind"] == kind and e["target"] == target)


def no_request_waited_for_the_attempt_timer(run_dir: Path) -> None:
    """A killed process closes its connections: the load generator retries what waited on it
    at once (its link monitor), so no request sits out attempt_timeout_s (6 s here), and none
    waits longer than a cold start plus a detection."""
    with open(run_dir / "requests.csv", newline="") as fh:
        ttfts = [float(r["ttft_s"]) for r in csv.DictReader(fh)]
    assert max(ttfts) < 6.0 - 1.0, max(ttfts)


# Recovery is judged on trailing 10 s windows wholly after the fault (cli/report/recovery.py):
# a run that checks it goes on for a slow stretch after the fault, plus that window, plus slack.
RECOVERY_WINDOW_S = 10.0


def check_recovered(run_dir: Path, events: list[dict[str, str]]) -> Recovery:
    """The one fault recovered (recovery.csv), and summary.csv averages that figure."""
    (recovery,) = read_recoveries(run_dir / RECOVERY)
    assert recovery.recovered, (recovery, events)
    with open(run_dir / "summary.csv", newline="") as fh:
        (summary,) = list(csv.DictReader(fh))
    assert float(summary["avg_recovery_time"]) == pytest.approx(recovery.recovery_s)
    return recovery


def rerender_is_identical(run_dir: Path) -> None:
    """`experiment report` re-renders with the code path the run used: the same derived files."""
    written = {name: (run_dir / name).read_bytes() for name in (RECOVERY, "summary.csv")}
    out = subprocess.run([schedctl(), "experiment", "report", str(run_dir)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert {name: (run_dir / name).read_bytes() for name in written} == written


@pytest.mark.slow
def test_kill_a_node_centralized_loses_nothing(tmp_path: Path) -> None:
    run_dir, events = run_with_faults(tmp_path, "centralized", ["5:kill:node-1"], duration=5 + 10 + RECOVERY_WINDOW_S)
    fault = first(events, "fault", "node-1")
    assert 4.9 <= fault <= 5.5
    assert first(events, "node_dead", "node-1") - fault <= COORDINATOR_BOUND_S
    assert first(events, "silent", "node-1") - fault <= COLLECTOR_BOUND_S
    assert not [e for e in events if e["kind"] == "node_recovered"]  # a killed node stays dead
    assert not [e for e in events if e["kind"] in VERDICTS]  # gossip verdicts come only from gossip peers
    check_recovered(run_dir, events)
    no_request_waited_for_the_attempt_timer(run_dir)
    rerender_is_identical(run_dir)


@pytest.mark.slow
def test_kill_a_node_gossip_loses_nothing(tmp_path: Path) -> None:
    # At 5 s, past the first cold start (on a loaded machine one can outlast 3 s, and then no
    # request has finished to make a baseline); the run goes on past the first DEAD (<= 14 s,
    # see SUSPICION_S) by a recovery window.
    run_dir, events = run_with_faults(tmp_path, "gossip", ["5:kill:node-1"], nodes=3,
                                      duration=14 + RECOVERY_WINDOW_S)
    fault = first(events, "fault", "node-1")
    assert first(events, "silent", "node-1") - fault <= COLLECTOR_BOUND_S
    # Every survivor reports its own verdicts about the killed peer ...
    for kind in ("suspect", "dead"):
        assert observers(events, kind, "node-1") == {"node-0", "node-2"}, events
    assert first(events, "suspect", "node-1") - fault <= SUSPECT_BOUND_S
    assert first(events, "dead", "node-1") - first(events, "suspect", "node-1") <= SUSPICION_S
    # ... and none declares a healthy one dead
    assert not [e for e in events if e["kind"] == "dead" and e["target"] != "node-1"], events
    recovery = check_recovered(run_dir, events)
    no_request_waited_for_the_attempt_timer(run_dir)
    # the first verdict of any observer is the detection
    first_verdict = min(first(events, "suspect", "node-1"), first(events, "silent", "node-1"))
    assert recovery.detection_s == pytest.approx(first_verdict - fault)


def observers(events: list[dict[str, str]], kind: str, target: str) -> set[str]:
    """The peers (detail `by=...`) that reported `kind` about `target`."""
    hits = [e for e in events if e["kind"] == kind and e["target"] == target]
    return {e["detail"].split(";")[0].removeprefix("by=") for e in hits}


@pytest.mark.slow
def test_pause_longer_than_dead_after_is_detected_and_comes_back(tmp_path: Path) -> None:
    _, events = run_with_faults(tmp_path, "centralized", ["4:pause:node-1:5"])
    fault = first(events, "fault", "node-1")
    assert first(events, "node_dead", "node-1") - fault <= COORDINATOR_BOUND_S
    assert first(events, "resumed", "node-1") >= fault + 5.0 - 0.01  # event times are rounded to ms
    assert first(events, "node_recovered", "node-1") > first(events, "node_dead", "node-1")
    assert first(events, "heard_again", "node-1") > first(events, "silent", "node-1")


@pytest.mark.slow
def test_pause_a_gossip_peer_past_its_suspicion_timeout(tmp_path: Path) -> None:
    """SIGSTOP for 10 s, longer than suspicion + its timeout (<= 9 s): the survivors declare it
    dead, and after SIGCONT it refutes with a higher incarnation (each survivor says `alive`).
    At 5 s, past the first cold start, so there is a baseline to recover to."""
    run_dir, events = run_with_faults(tmp_path, "gossip", ["5:pause:node-1:10"], nodes=3,
                                      duration=5 + 10 + 3 + RECOVERY_WINDOW_S)  # resumed at 15 s, then a window
    fault = first(events, "fault", "node-1")
    assert first(events, "suspect", "node-1") - fault <= SUSPECT_BOUND_S
    assert first(events, "dead", "node-1") - first(events, "suspect", "node-1") <= SUSPICION_S
    resumed = first(events, "resumed", "node-1")
    assert first(events, "alive", "node-1") >= resumed - 0.01
    assert observers(events, "alive", "node-1") == {"node-0", "node-2"}
    assert not [e for e in events if e["kind"] == "dead" and e["target"] != "node-1"], events
    check_recovered(run_dir, events)


MIGRATING = """
[experiment]
name = "migrate"
scheduler = "centralized"
policy = "round-robin"              # both nodes serve: node-0 has requests to move
timeout_s = 60
faults = ["3:migrate:node-0"]
[workload]
duration_s = 5
rps = 3
cv = 1
seed = 7
models = ["facebook/opt-125m"]
prompt_tokens = 100
output_tokens = 1500
[[nodes]]
count = 2
models = ["facebook/opt-125m"]
init_s = 0.5
"""


def test_a_migrate_fault_moves_a_running_request_and_is_recorded(tmp_path: Path) -> None:
    """On the embedded default cluster (real coordinator, nodes, emulators, load generator):
    node-0 moves one running request to node-1; every request still ends once, whole."""
    config = tmp_path / "exp.toml"
    config.write_text(MIGRATING)
    out = subprocess.run([schedctl(), "experiment", "run", "-c", str(config), "--results-dir",
                          str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    check_one_migration(run_dir)


def check_one_migration(run_dir: Path) -> tuple[RequestRow, Event, dict[str, str]]:
    """What a run of MIGRATING writes, on either engine (tests/sim runs it simulated): node-0
    moved one running request to node-1, every request ended once and whole, the order is an
    event and not a fault. Returns the moved request, its `migrated` event and summary.csv's row."""
    requests = read_requests(run_dir / "requests.csv")
    assert [r.status for r in requests] == [OK] * len(requests) and all(r.tokens == 1500 for r in requests)
    [moved] = [r for r in requests if r.migrated]
    assert (moved.migrated_from, moved.migrated_to, moved.node) == ("node-0", "node-1", "node-1")
    assert moved.migration_tokens is not None and 0 < moved.migration_tokens < 1500
    assert moved.migration_gap_s > 0 and moved.migration_resume_s > 0 and moved.migration_s > 3.0
    events = read_events(run_dir / "events.csv")
    assert [(e.target, e.fields()["to"]) for e in events if e.kind == "migrate_ordered"] == [("node-0", "node-1")]
    [migrated] = [e for e in events if e.kind == "migrated"]
    assert migrated.target == "node-0" and migrated.fields()["request"] == moved.request_id
    assert not [e for e in events if e.kind == "fault"]  # an order, not a failure
    with open(run_dir / "summary.csv", newline="") as fh:
        (summary,) = list(csv.DictReader(fh))
    assert int(summary["migrate_count"]) == 1
    return moved, migrated, summary
