"""Recovery after each fault (REFERENCE.md §5.7), from a run's files, appended to events.csv.

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
  which would excuse any slowdown after it). Service is back at the first arrival t >= t_f from which the
  requests scheduled in [t, t + 10 s) succeed at >= 99 % of the baseline rate
  with p99 TTFT <= 1.2x the baseline's; recovery_s = t - t_f. No such t: `not_recovered`.

The result is one `recovered` event per fault at t_f + recovery_s with
`recovery_s=...;detection_s=...;drain_s=...` in detail, which summary.py averages into
avg_recovery_time. `load_recoveries` gives the same figures (and the baseline) to the plots.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NODE_DETECTIONS = frozenset({"node_dead", "node_restarted", "silent", "suspect", "dead", "peer_dead"})
COORDINATOR_DETECTIONS = frozenset({"coordinator_silent", "coordinator_active"})
DETECTIONS = NODE_DETECTIONS | COORDINATOR_DETECTIONS
COORDINATOR = "coordinator"  # the fault target naming the coordinator (cli/experiment/faults.py)
WINDOW_S = 10.0
SUCCESS_FRACTION = 0.99
TTFT_FACTOR = 1.2


@dataclass(frozen=True)
class Request:
    scheduled_s: float
    sent_s: float | None
    done_s: float | None
    ttft_s: float | None
    ok: bool
    nodes: frozenset[str]  # where it ran and the nodes that failed it


@dataclass(frozen=True)
class Recovery:
    t_fault: float
    target: str
    kind: str
    detection_s: float
    drain_s: float
    recovery_s: float
    # The pre-fault baseline recovery_s was judged against (NaN when there was none).
    base_success: float = math.nan
    base_p99_ttft_s: float = math.nan

    def event_row(self) -> list[object]:
        detail = (f"recovery_s={_fmt(self.recovery_s)};detection_s={_fmt(self.detection_s)};"
                  f"drain_s={_fmt(self.drain_s)};fault={self.kind}")
        if math.isnan(self.recovery_s):
            return [round(self.t_fault, 3), "not_recovered", self.target, detail.replace("recovery_s=;", "")]
        return [round(self.t_fault + self.recovery_s, 3), "recovered", self.target, detail]


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"


def _float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_requests(path: Path) -> list[Request]:
    with open(path, newline="") as fh:
        out = []
        for row in csv.DictReader(fh):
            nodes = {row.get("node") or ""} | set((row.get("failed_nodes") or "").split(";"))
            scheduled = float(row["scheduled_s"])
            out.append(Request(scheduled, _float(row.get("sent_s")), _float(row.get("done_s")),
                               _ttft(row, scheduled), row["status"] == "ok", frozenset(nodes - {""})))
    return sorted(out, key=lambda r: r.scheduled_s)


def _ttft(row: dict[str, str], scheduled_s: float) -> float | None:
    """ttft_s, or from first_token_s where a file has only the columns cli/report requires."""
    if "ttft_s" in row:
        return _float(row["ttft_s"])
    first = _float(row.get("first_token_s"))
    return None if first is None else first - scheduled_s


def read_events(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return [row for row in csv.reader(fh)][1:]


def recoveries(requests: list[Request], events: list[list[str]]) -> list[Recovery]:
    out = []
    for t_s, kind, target, detail in events:
        if kind != "fault":
            continue
        t_f = float(t_s)
        fault_kind = detail.partition("kind=")[2].partition(";")[0]
        base = _baseline(requests, t_f)
        recovery_s = _recovery(requests, t_f, base) if base is not None else math.nan
        out.append(Recovery(t_f, target, fault_kind, _detection(events, target, t_f),
                            _drain(requests, target, t_f), recovery_s, *(base or (math.nan, math.nan))))
    return out


def _detection(events: list[list[str]], target: str, t_f: float) -> float:
    if target == COORDINATOR:
        times = [float(t) for t, kind, _, _ in events if kind in COORDINATOR_DETECTIONS]
    else:
        times = [float(t) for t, kind, who, _ in events if who == target and kind in NODE_DETECTIONS]
    after = [t for t in times if t >= t_f]
    return min(after) - t_f if after else math.nan


def _drain(requests: list[Request], target: str, t_f: float) -> float:
    hit = [r for r in requests if r.sent_s is not None and r.sent_s <= t_f
           and (r.done_s is None or r.done_s > t_f) and (target == COORDINATOR or target in r.nodes)]
    ends = [r.done_s for r in hit if r.done_s is not None]
    return max(ends) - t_f if ends else 0.0


def _stats(requests: list[Request]) -> tuple[float, float]:
    """Success rate and p99 TTFT (s) of `requests` (NaN p99 without a success)."""
    ttfts = [r.ttft_s for r in requests if r.ok and r.ttft_s is not None]
    rate = sum(r.ok for r in requests) / len(requests)
    return rate, float(np.percentile(ttfts, 99)) if ttfts else math.nan


def _baseline(requests: list[Request], t_f: float) -> tuple[float, float] | None:
    """Success rate and p99 TTFT just before the fault; None when nothing had finished by then."""
    for since in (t_f - WINDOW_S, -math.inf):
        scheduled = [r for r in requests if since <= r.scheduled_s < t_f]
        done = [r for r in scheduled if r.ok and r.done_s is not None and r.done_s <= t_f]
        if done:
            return _stats(done + [r for r in scheduled if not r.ok])
    return None


def _recovery(requests: list[Request], t_f: float, baseline: tuple[float, float]) -> float:
    base_rate, base_p99 = baseline
    after = [r for r in requests if r.scheduled_s >= t_f]
    for i in range(len(after)):
        t = after[i].scheduled_s
        window = [r for r in after[i:] if r.scheduled_s < t + WINDOW_S]
        rate, p99 = _stats(window)
        if rate >= SUCCESS_FRACTION * base_rate and p99 <= TTFT_FACTOR * base_p99:
            # Back for the requests arriving from this one on (an upper bound: the service may
            # have come back at any time since the previous arrival).
            return t - t_f
    return math.nan


def load_recoveries(run_dir: Path) -> list[Recovery]:
    """Each fault's recovery from the run's requests.csv and events.csv ([] without them).

    Idempotent: the `recovered` rows write_recoveries appends are not detections."""
    if not (run_dir / "events.csv").exists() or not (run_dir / "requests.csv").exists():
        return []
    return recoveries(read_requests(run_dir / "requests.csv"), read_events(run_dir / "events.csv"))


def write_recoveries(run_dir: Path) -> list[Recovery]:
    """Compute each fault's recovery from requests.csv and events.csv; append the events."""
    found = load_recoveries(run_dir)
    if found:
        with open(run_dir / "events.csv", "a", newline="") as fh:
            csv.writer(fh).writerows(r.event_row() for r in found)
    return found
