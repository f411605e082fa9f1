"""Requests affected by a fault, against cases worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

from cli.report import load_run, summarize
from cli.report.affected import (
    Exposure,
    affected_ids,
    requests_affected,
    retried,
    timeout_of,
)
from daemons.rundir import Recovery, RequestRow
from tests.report.builders import NODES, REQUESTS, write_run

NAN = math.nan


def out(rid: str, sent: float, done: float = NAN, ttft: float = NAN, status: str = "ok",
        retried: bool = False, scheduled: float | None = None) -> RequestRow:
    """A request first sent at `sent`, its TTFT from `scheduled` (default: sent)."""
    sched = sent if scheduled is None else scheduled
    return RequestRow(rid, sched, sent_s=sent, done_s=done, first_token_s=sched + ttft, status=status,
                      attempts=2 if retried else 1)


# A fault at t=10, judged recovered 5 s later, pre-fault p99 TTFT 0.5 s.
FAULT = Exposure(t_s=10.0, until_s=15.0, p99_ttft_s=0.5)


def test_each_rule() -> None:
    requests = [
        out("fast-in-flight", 9, done=11, ttft=0.2),          # exposed, unharmed
        out("slow-in-flight", 9, done=11, ttft=0.8),          # exposed, TTFT above p99: affected
        out("done-before", 5, done=9, ttft=2.0),              # finished before the fault
        out("done-at-fault", 9.5, done=10, ttft=0.9),         # finished at t_f: not in flight
        out("failed-in-window", 12, status="error"),          # affected
        out("failed-after-window", 16, status="timeout"),     # sent after recovery: not exposed
        out("retried-in-window", 14, done=15, ttft=0.1, retried=True),  # affected
        out("ok-at-window-end", 15, done=16, ttft=0.1),       # exposed, unharmed
        out("never-sent", NAN, status="not_sent", scheduled=11),
    ]
    assert affected_ids(requests, [FAULT], timeout_s=120) == {"slow-in-flight", "failed-in-window",
                                                              "retried-in-window"}


def test_a_failure_without_end_time_is_in_flight_until_its_deadline() -> None:
    early = [out("failed-early", 0, status="error")]
    assert affected_ids(early, [FAULT], timeout_s=120) == {"failed-early"}  # may still have been waiting
    assert affected_ids(early, [FAULT], timeout_s=5) == set()  # certainly over by t=5


def test_never_recovered_exposes_the_rest_of_the_run_and_no_baseline_drops_the_ttft_rule() -> None:
    fault = Exposure(t_s=10.0, until_s=math.inf, p99_ttft_s=NAN)
    requests = [out("late-failure", 500, status="error"), out("slow", 20, done=30, ttft=9.0)]
    assert affected_ids(requests, [fault], timeout_s=120) == {"late-failure"}


def test_a_request_counts_once_over_several_faults() -> None:
    second = Exposure(t_s=12.0, until_s=20.0, p99_ttft_s=0.5)
    assert affected_ids([out("r", 11, status="error")], [FAULT, second], timeout_s=120) == {"r"}


def test_exposure_from_a_recovery() -> None:
    recovered = Recovery(t_s=3, target="node-1", fault="kill", detection_s=1, drain_s=0, recovery_s=4,
                         base_success=1, base_p99_ttft_s=0.25)
    assert Exposure.of(recovered) == Exposure(3, 7, 0.25)
    never = Recovery(3, "node-1", "kill", 1, 0, NAN)
    assert Exposure.of(never).until_s == math.inf and math.isnan(Exposure.of(never).p99_ttft_s)


def test_retried_from_attempts_or_failed_nodes() -> None:
    rows = [RequestRow("a", 1, attempts=1), RequestRow("b", 1, attempts=2),
            RequestRow("c", 1, attempts=1, failed_nodes=("node-2",)), RequestRow("d", 1, status="not_sent")]
    assert [retried(r) for r in rows] == [False, True, True, False]


def test_without_a_send_time_the_scheduled_time_stands_for_it() -> None:
    # An older requests.csv has no sent_s column: its rows read with sent_s NaN.
    old = RequestRow("old", 12.0, first_token_s=13.0, done_s=14.0, status="error")
    never = RequestRow("never", 12.0, status="not_sent")
    assert affected_ids([old, never], [FAULT], timeout_s=120) == {"old"}


def test_timeout_of_the_manifest() -> None:
    assert timeout_of({"spec": {"timeout_s": 30}}) == 30
    assert timeout_of({}) == 120 and timeout_of({"spec": {"timeout_s": True}}) == 120


def test_a_run_s_summary(tmp_path: Path) -> None:
    # builders' run: the fault on node-b at t=2 has a baseline of r1 alone (p99 TTFT .125 s) and is
    # never judged recovered; exposed are r2 (in flight at 2), r3..r6 (sent from 2 on). r2, r3, r4
    # are slower than .125 s to their first token, r5 timed out, r6 failed: 5 affected.
    assert summarize(write_run(tmp_path / "a")).requests_affected == 5
    assert requests_affected(load_run(tmp_path / "a" / "exp_centralized_20250101_120000"), timeout_s=120) == 5
    assert summarize(write_run(tmp_path / "b", requests=REQUESTS, nodes=NODES, events=[])).requests_affected == 0
