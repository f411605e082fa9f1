"""Recovery after each fault (defined in docs/faults.md), from a run's requests and events.

For a `fault` event on TARGET at t_f:

- detection_s: the first verdict after the fault, minus t_f (events at or after t_f only):
  - TARGET a node: the first event about TARGET (its `target` column) of a kind in
    NODE_DETECTIONS: the coordinator's `node_dead`/`node_restarted`, the collector's
    `silent`, a gossip peer's own `suspect`/`dead` (one row per observing peer, `by=` in
    detail: the earliest counts), and `peer_dead` (no writer records that kind today);
  - TARGET `coordinator`: the first `coordinator_silent` (the collector's verdict that
    the coordinator's heartbeat stopped) or `coordinator_active` (a standby took over)
    after t_f, whatever its target column says: the standby that takes over names
    itself there, not the coordinator that failed. No such event: NaN;
- drain_s: the requests in flight at t_f on TARGET (placed on it, or failed by it and
  retried: `node` or `failed_nodes`; every request in flight when TARGET is the
  coordinator) are resolved when they complete; drain_s is the last completion minus t_f
  (0 when none was in flight). A request that ended in an error has no end time in
  requests.csv and is left out;
- recovery_s: baseline = the success rate and p99 TTFT of the requests scheduled in the
  10 s before t_f that had finished by t_f (all those scheduled before t_f when none in
  that window had: the steady state just before the fault, not the run's cold start,
  which would excuse any slowdown after it). Windows trail and start at the fault: the
  window at t holds the requests scheduled in (max(t_f, t − 10 s), t], what a monitor
  could know at t — never the future, and nothing from before the fault. Service is back
  at the first t >= t_f whose window holds enough evidence (at least MIN_EVIDENCE
  requests, or a whole 10 s) and whose requests succeed at >= 99 % of the baseline rate
  with p99 TTFT <= 1.2x the baseline's; recovery_s = t − t_f. A fault that hurt nobody
  recovers as soon as MIN_EVIDENCE requests after it were served well; a bad request holds
  recovery back while it stays in the window (10 s), unless enough good ones outweigh it.
  No such t up to the last arrival: NaN, not recovered.

The result is one `Recovery` per fault (daemons/rundir/recovery.py), with the baseline
it was judged against. `write_report` (cli/report/run_report.py) writes them to
recovery.csv once; summary.py (avg_recovery_time, over the recovered faults), the text
report and the plots read them from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from daemons.rundir import FAULT, Event, Recovery, RequestRow

NODE_DETECTIONS = frozenset({"node_dead", "node_restarted", "silent", "suspect", "dead", "peer_dead"})
COORDINATOR_DETECTIONS = frozenset({"coordinator_silent", "coordinator_active"})
DETECTIONS = NODE_DETECTIONS | COORDINATOR_DETECTIONS
COORDINATOR = "coordinator"  # the fault target naming the coordinator (cli/experiment/faults.py)
WINDOW_S = 10.0
SUCCESS_FRACTION = 0.99
TTFT_FACTOR = 1.2
# Fewer requests than this after a fault prove nothing unless they span a whole window: one
# lucky request on a healthy node must not declare a recovery.
MIN_EVIDENCE = 5


def recoveries(requests: Sequence[RequestRow], events: Sequence[Event]) -> list[Recovery]:
    """One Recovery per `fault` event, in the events' order."""
    by_time = sorted(requests, key=lambda r: r.scheduled_s)
    out = []
    for fault in events:
        if fault.kind != FAULT:
            continue
        t_f = fault.t_s
        base = _baseline(by_time, t_f)
        recovery_s = _recovery(by_time, t_f, base) if base is not None else math.nan
        out.append(Recovery(t_f, fault.target, fault.fields().get("kind", ""), _detection(events, fault.target, t_f),
                            _drain(by_time, fault.target, t_f), recovery_s, *(base or (math.nan, math.nan))))
    return out


def _detection(events: Sequence[Event], target: str, t_f: float) -> float:
    if target == COORDINATOR:
        times = [e.t_s for e in events if e.kind in COORDINATOR_DETECTIONS]
    else:
        times = [e.t_s for e in events if e.target == target and e.kind in NODE_DETECTIONS]
    after = [t for t in times if t >= t_f]
    return min(after) - t_f if after else math.nan


def _ran_on(r: RequestRow, target: str) -> bool:
    """Placed on `target`, or failed by it and retried elsewhere."""
    return target == r.node or target in r.failed_nodes


def _drain(requests: Sequence[RequestRow], target: str, t_f: float) -> float:
    hit = [r for r in requests if r.sent_s <= t_f and not r.done_s <= t_f  # sent, not done by t_f (NaN: never)
           and (target == COORDINATOR or _ran_on(r, target))]
    ends = [r.done_s for r in hit if not math.isnan(r.done_s)]
    return max(ends) - t_f if ends else 0.0


def _stats(requests: Sequence[RequestRow]) -> tuple[float, float]:
    """Success rate and p99 TTFT (s) of `requests` (NaN p99 without a success)."""
    ttfts = [r.ttft_s for r in requests if r.ok and not math.isnan(r.ttft_s)]
    rate = sum(r.ok for r in requests) / len(requests)
    return rate, float(np.percentile(ttfts, 99)) if ttfts else math.nan


def _baseline(requests: Sequence[RequestRow], t_f: float) -> tuple[float, float] | None:
    """Success rate and p99 TTFT just before the fault; None when nothing had finished by then."""
    for since in (t_f - WINDOW_S, -math.inf):
        scheduled = [r for r in requests if since <= r.scheduled_s < t_f]
        done = [r for r in scheduled if r.ok and r.done_s <= t_f]
        if done:
            return _stats(done + [r for r in scheduled if not r.ok])
    return None


def _recovery(requests: Sequence[RequestRow], t_f: float, baseline: tuple[float, float]) -> float:
    base_rate, base_p99 = baseline
    sched = np.asarray([r.scheduled_s for r in requests])
    for t in _window_ends(sched, t_f):
        start = max(t_f, t - WINDOW_S)
        lo, hi = np.searchsorted(sched, start, side="right"), np.searchsorted(sched, t, side="right")
        if (hi - lo < MIN_EVIDENCE and t < t_f + WINDOW_S) or hi == lo:
            continue
        rate, p99 = _stats(requests[int(lo):int(hi)])
        if rate >= SUCCESS_FRACTION * base_rate and p99 <= TTFT_FACTOR * base_p99:
            return t - t_f
    return math.nan


def _window_ends(sched: np.ndarray, t_f: float) -> list[float]:
    """The times t >= t_f at which the window (max(t_f, t − WINDOW_S), t] changes: each
    arrival after the fault (it enters), each such arrival + WINDOW_S (it leaves) and the
    first whole window, up to the last arrival, in order; a verdict holds until the next."""
    last = float(sched[-1]) if sched.size else -math.inf
    after = sched[sched > t_f]
    ends = {t_f + WINDOW_S, *after.tolist(), *(after + WINDOW_S).tolist()}
    # Only while load arrives: past the last arrival a window empties out and proves nothing.
    return sorted(e for e in ends if t_f < e <= last)
