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
(older files): then no request counts as retried, and scheduled_s stands for sent_s.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.report.recovery import Recovery, load_recoveries
from cli.report.results import NOT_SENT, OK
from daemons.core.errors import ConfigError

DEFAULT_TIMEOUT_S = 120.0  # the runner's default request timeout (cli/experiment/spec.py)


@dataclass(frozen=True)
class Outcome:
    """What the affected-count needs of one request (times in seconds from t = 0)."""

    request_id: str
    scheduled_s: float
    sent_s: float  # first send; NaN when never sent
    done_s: float  # NaN when it did not succeed
    ttft_s: float  # from scheduled_s; NaN without a first token
    status: str
    retried: bool  # more than one attempt, or a node failed it

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class Exposure:
    """One fault: its time, the end of its exposure window, and the pre-fault p99 TTFT."""

    t_s: float
    until_s: float  # inf when never judged recovered
    p99_ttft_s: float  # NaN: no baseline

    @classmethod
    def of(cls, recovery: Recovery) -> Exposure:
        until = recovery.t_fault + recovery.recovery_s if not math.isnan(recovery.recovery_s) else math.inf
        return cls(recovery.t_fault, until, recovery.base_p99_ttft_s)


def exposed(r: Outcome, fault: Exposure, timeout_s: float) -> bool:
    """In flight at the fault, or first sent within its exposure window (module docstring)."""
    if r.status == NOT_SENT or math.isnan(r.sent_s):
        return False
    if r.sent_s > fault.t_s:
        return r.sent_s <= fault.until_s
    end = r.done_s if r.ok else r.scheduled_s + timeout_s
    return end > fault.t_s


def hurt(r: Outcome, fault: Exposure) -> bool:
    """Failed, retried/reassigned, or slower to its first token than the pre-fault p99."""
    # `>` on NaN is False: no baseline, or no first token (then it failed and counts anyway).
    return not r.ok or r.retried or r.ttft_s > fault.p99_ttft_s


def affected_ids(requests: Sequence[Outcome], faults: Sequence[Exposure], timeout_s: float) -> set[str]:
    """The ids of the requests affected by at least one fault."""
    return {r.request_id for r in requests for f in faults if exposed(r, f, timeout_s) and hurt(r, f)}


def read_outcomes(path: Path) -> list[Outcome]:
    """The rows of a requests.csv, as the affected-count needs them; a bad cell is a ConfigError."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            return [_outcome(row) for row in reader]
        except (KeyError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}:{reader.line_num}: cannot read a request ({type(exc).__name__}: {exc}); "
                              "it should be written by `schedctl experiment run`: re-run the experiment or "
                              "repair the file") from None


def _outcome(row: dict[str, str]) -> Outcome:
    scheduled = float(row["scheduled_s"])
    first = _float(row.get("first_token_s"))
    sent = _float(row.get("sent_s")) if "sent_s" in row else scheduled
    attempts = _float(row.get("attempts"))
    return Outcome(
        request_id=row["request_id"].strip(), scheduled_s=scheduled, sent_s=sent, done_s=_float(row.get("done_s")),
        ttft_s=first - scheduled, status=row["status"].strip().lower(),
        retried=(not math.isnan(attempts) and attempts > 1) or bool((row.get("failed_nodes") or "").strip()),
    )


def _float(text: str | None) -> float:
    return float(text) if text not in (None, "") else math.nan


def timeout_of(manifest: dict[str, Any]) -> float:
    """The run's request timeout: its manifest's spec.timeout_s, else the runner's default."""
    spec = manifest.get("spec")
    value = spec.get("timeout_s") if isinstance(spec, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
        else DEFAULT_TIMEOUT_S


def requests_affected(run_dir: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """The run's number of requests affected by a fault (0 without faults or files)."""
    faults = [Exposure.of(r) for r in load_recoveries(run_dir)]
    if not faults:
        return 0
    return len(affected_ids(read_outcomes(run_dir / "requests.csv"), faults, timeout_s))
