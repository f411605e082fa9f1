"""Requests affected by a fault: how many users an injected fault reached.

For each `fault` event at t_f (cli/report/recovery.py computes its recovery), the
*exposure window* is [t_f, t_f + recovery_s], recovery_s being the time until service was
judged back to its pre-fault level (recovery.py); a fault never judged recovered (or with
no pre-fault baseline to judge against) exposes every request up to the end of the run.

A request is *exposed* to the fault when it was
- in flight at t_f: first sent at or before t_f and not finished by then (a successful
  request done after t_f; a failed one whose deadline, scheduled_s + the run's timeout_s,
  is after t_f: requests.csv records no end time for a failure, so one that failed
  before t_f but within its timeout is counted too — an upper bound), or
- first sent within the exposure window (t_f < sent_s <= t_f + recovery_s).
A request never sent (status not_sent) is never exposed.

An exposed request is *affected* when any of these holds:
- it failed (status error or timeout);
- it was retried or reassigned: more than one attempt (`attempts` > 1: a retry or a
  reroute to another coordinator), or a node that failed it (`failed_nodes` not empty: a
  retry elsewhere, or a gossip peer's Reassigned);
- it succeeded with a TTFT (from its scheduled time) strictly above the pre-fault p99 TTFT
  (recovery.py's baseline: the requests scheduled in the 10 s before t_f and finished by
  t_f, else all those scheduled before t_f). Without a baseline (nothing had finished by
  t_f) this criterion does not apply.

`requests_affected` is the number of distinct requests affected by at least one fault; 0
for a run without faults. Columns `attempts`, `failed_nodes` and `sent_s` may be absent
(older files): then no request counts as retried, and scheduled_s stands for sent_s (as
for any request without a send time that is not `not_sent`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cli.report.results import RunData
from daemons.rundir import NOT_SENT, Recovery, RequestRow

DEFAULT_TIMEOUT_S = 120.0  # the runner's default request timeout (cli/experiment/spec.py)


@dataclass(frozen=True)
class Exposure:
    """One fault: its time, the end of its exposure window, and the pre-fault p99 TTFT."""

    t_s: float
    until_s: float  # inf when never judged recovered
    p99_ttft_s: float  # NaN: no baseline

    @classmethod
    def of(cls, recovery: Recovery) -> Exposure:
        until = recovery.t_s + recovery.recovery_s if recovery.recovered else math.inf
        return cls(recovery.t_s, until, recovery.base_p99_ttft_s)


def retried(r: RequestRow) -> bool:
    """More than one attempt (a retry, a reroute), or a node that failed it."""
    return r.attempts > 1 or bool(r.failed_nodes)


def exposed(r: RequestRow, fault: Exposure, timeout_s: float) -> bool:
    """In flight at the fault, or first sent within its exposure window (module docstring)."""
    if r.status == NOT_SENT:
        return False
    sent = r.scheduled_s if math.isnan(r.sent_s) else r.sent_s  # NaN: the file has no sent_s column
    if sent > fault.t_s:
        return sent <= fault.until_s
    end = r.done_s if r.ok else r.scheduled_s + timeout_s
    return end > fault.t_s


def hurt(r: RequestRow, fault: Exposure) -> bool:
    """Failed, retried/reassigned, or slower to its first token than the pre-fault p99."""
    # `>` on NaN is False: no baseline, or no first token (then it failed and counts anyway).
    return not r.ok or retried(r) or r.ttft_s > fault.p99_ttft_s


def affected_ids(requests: Sequence[RequestRow], faults: Sequence[Exposure], timeout_s: float) -> set[str]:
    """The ids of the requests affected by at least one fault."""
    return {r.request_id for r in requests for f in faults if exposed(r, f, timeout_s) and hurt(r, f)}


def timeout_of(manifest: dict[str, Any]) -> float:
    """The run's request timeout: its manifest's spec.timeout_s, else the runner's default."""
    spec = manifest.get("spec")
    value = spec.get("timeout_s") if isinstance(spec, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
        else DEFAULT_TIMEOUT_S


def requests_affected(run: RunData, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """The run's number of requests affected by a fault (0 without faults)."""
    faults = [Exposure.of(r) for r in run.recoveries]
    return len(affected_ids(run.requests, faults, timeout_s)) if faults else 0
