"""Detection in recovery.py from hand-made events: gossip verdicts and coordinator verdicts; the baseline."""

from __future__ import annotations

import math

import pytest

from cli.report.recovery import recoveries
from daemons.rundir import Event, RequestRow


def served(t: float, done: float, ttft: float) -> RequestRow:
    """A request scheduled and sent at `t`, first token `ttft` later, done at `done`, on node-0."""
    return RequestRow(f"r{t}", t, sent_s=t, first_token_s=t + ttft, done_s=done, status="ok", node="node-0")


def events(*rows: tuple[float, str, str, str]) -> list[Event]:
    return [Event(*row) for row in rows]


# Requests every second from 0 to 19, all served in 0.5 s: a baseline, and recovery right after.
REQUESTS = [served(float(t), t + 0.5, 0.125) for t in range(20)]


def detection(found_in: list[Event]) -> float:
    (found,) = recoveries(REQUESTS, found_in)
    return found.detection_s


def test_the_first_gossip_verdict_about_the_target_is_the_detection() -> None:
    found_in = events(
        (4.0, "dead", "node-1", "by=node-2;incarnation=0;accuser=node-2"),  # before the fault: not about it
        (5.0, "fault", "node-1", "kind=kill"),
        (5.8, "suspect", "node-2", "by=node-0;incarnation=0;accuser=node-0"),  # another node
        (6.0, "coordinator_silent", "node-1", ""),  # a coordinator verdict says nothing of a node
        (6.5, "suspect", "node-1", "by=node-0;incarnation=0;accuser=node-0"),
        (6.6, "suspect", "node-1", "by=node-2;incarnation=0;accuser=node-0"),
        (8.5, "dead", "node-1", "by=node-2;incarnation=0;accuser=node-2"),
        (9.0, "silent", "node-1", "no NodeState for 3.0 s"),
    )
    assert detection(found_in) == pytest.approx(1.5)
    assert detection([e for e in found_in if e.kind != "suspect"]) == pytest.approx(3.5)
    # `alive` (a refuted suspicion, a rejoin) is a verdict but no detection of a failure
    assert math.isnan(detection(events((5.0, "fault", "node-1", "kind=pause"), (7.0, "alive", "node-1", "by=node-0"))))


def test_a_coordinator_fault_is_detected_by_the_first_coordinator_verdict() -> None:
    found_in = events(
        (3.0, "coordinator_silent", "coordinator", "before the fault"),
        (5.0, "fault", "coordinator", "kind=kill"),
        (5.5, "silent", "node-0", ""),  # node verdicts do not detect the coordinator
        (7.25, "coordinator_active", "standby-1", "epoch=2"),  # the standby names itself
        (8.0, "coordinator_silent", "coordinator", "no heartbeat for 3.0 s"),
    )
    assert detection(found_in) == pytest.approx(2.25)
    silent_first = [*found_in, *events((6.5, "coordinator_silent", "coordinator", "no heartbeat for 1.5 s"))]
    assert detection(silent_first) == pytest.approx(1.5)
    assert math.isnan(detection(found_in[:3]))  # no verdict after the fault: NaN, not the earlier one


def test_the_baseline_is_the_steady_state_just_before_the_fault_not_the_cold_start() -> None:
    """Cold starts at 0-2 s took 5 s to the first token; from 3 s on 0.1 s. A fault at 20 s
    makes the requests of 20-25 s wait up to 5 s: judged against the whole run's p99 (~5 s)
    the first window wholly after the fault, (20 s, 30 s], would count as recovered; against
    the 10 s before the fault it is not until the last slow arrival (24 s) has left the
    trailing window, at 34 s."""
    cold = [served(float(t), t + 5.5, 5.0) for t in range(3)]
    warm = [served(float(t), t + 0.5, 0.1) for t in range(3, 20)]
    hit = [served(float(t), 25.5, 25.0 - t) for t in range(20, 25)]
    after = [served(float(t), t + 0.5, 0.1) for t in range(25, 40)]
    (found,) = recoveries(cold + warm + hit + after, events((20.0, "fault", "coordinator", "kind=kill")))
    assert found.base_p99_ttft_s == pytest.approx(0.1)
    assert found.recovery_s == pytest.approx(14.0)
