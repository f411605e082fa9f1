"""What a run produced: the per-request records, the run's clock origin, and their files.

requests.csv (one row per planned request) is defined in daemons/rundir/requests.py; here
each record becomes its row. Times are seconds from the run's t = 0 on the sender's
monotonic clock; `t0_wall_s` (Unix time of t = 0, in the summary JSON) maps them onto
wall-clock time to align them with per-node telemetry.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemons.loadgen.recorder import RequestRecord
from daemons.rundir.requests import ERROR, NOT_SENT, OK, SHED, TIMEOUT, RequestRow, write_requests


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts handed to the progress callback about once a second."""

    elapsed_s: float
    total: int
    sent: int
    ok: int
    error: int
    timeout: int
    in_flight: int
    # The run's records themselves (not a copy: free to hand over), for a live view that reads
    # finished ones from its own thread (cli/watch/journal.py); a record is final once its status is set.
    records: Sequence[RequestRecord] = ()

    def line(self) -> str:
        return (f"{self.elapsed_s:7.1f}s  sent {self.sent}/{self.total}  ok {self.ok}  error {self.error}  "
                f"timeout {self.timeout}  in flight {self.in_flight}")


@dataclass(slots=True)
class Results:
    """The outcome of `run()`: one record per planned request, in schedule order."""

    records: list[RequestRecord]
    mode: str
    name: str
    t0_wall_s: float  # Unix time of t = 0
    ended_s: float  # seconds from t = 0 when the run ended
    ignored: dict[str, int] = field(default_factory=dict)  # late, duplicate, unknown, unexpected, malformed

    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.records)
        shed = {SHED: c[SHED]} if c[SHED] else {}  # only runs with --admission slo shed
        return {OK: c[OK], ERROR: c[ERROR], TIMEOUT: c[TIMEOUT], **shed, NOT_SENT: c[NOT_SENT]}

    def summary(self) -> dict[str, Any]:
        """Headline figures; latency percentiles in ms, from the scheduled send times."""
        ok = [r for r in self.records if r.status == OK]
        sent = [r for r in self.records if r.sent_s is not None]
        last_send = max((r.sent_s for r in sent if r.sent_s is not None), default=0.0)
        return {
            "name": self.name, "mode": self.mode, "total": len(self.records), **self.counts(),
            "errors_by_code": dict(Counter(r.error for r in self.records if r.status == ERROR)),
            "ignored": dict(self.ignored),
            "t0_wall_s": self.t0_wall_s,
            "t0_wall_iso": datetime.fromtimestamp(self.t0_wall_s, UTC).isoformat(),
            "ended_s": round(self.ended_s, 6),
            "send_rps": round(len(sent) / last_send, 3) if last_send > 0 else None,
            **_percentiles("send_lag_ms", [r.send_lag_s for r in sent]),
            **_percentiles("ttft_ms", [r.ttft_s for r in ok]),
            **_percentiles("latency_ms", [r.latency_s for r in ok]),
        }


def _percentiles(name: str, values: list[float | None]) -> dict[str, float | None]:
    data = np.asarray([v for v in values if v is not None], dtype=np.float64) * 1000.0
    if data.size == 0:
        return {f"{name}_p50": None, f"{name}_p99": None, f"{name}_max": None}
    p50, p99 = np.percentile(data, [50, 99])
    return {f"{name}_p50": round(float(p50), 3), f"{name}_p99": round(float(p99), 3),
            f"{name}_max": round(float(data.max()), 3)}


def request_row(rec: RequestRecord) -> RequestRow:
    """The requests.csv row of a record (None times become NaN: "did not happen")."""
    return RequestRow(
        request_id=rec.request_id, model=rec.model, prompt_tokens=rec.prompt_tokens,
        max_new_tokens=rec.max_new_tokens, scheduled_s=rec.scheduled_s, sent_s=_nan(rec.sent_s),
        placed_s=_nan(rec.placed_s), first_token_s=_nan(rec.first_token_s), done_s=_nan(rec.done_s),
        node=rec.node, action=rec.action, hops=rec.hops, tokens=rec.tokens, finish_reason=rec.finish_reason,
        status=rec.status, error=rec.error, error_detail=rec.error_detail, est_wait_s=_nan(rec.est_wait_s),
        decision_s=_nan(rec.decision_s), server_timings=dict(rec.server_timings), attempts=rec.attempts,
        failed_nodes=tuple(rec.failed_nodes), coordinator=rec.coordinator, epoch=rec.epoch,
        reroutes=rec.reroutes, placed_action=rec.placed_action, klass=rec.klass,
        slo_ttft_ms=rec.slo_ttft_ms or math.nan, slo_tpot_ms=rec.slo_tpot_ms or math.nan,
        migrated_from=rec.migrated_from, migrated_to=rec.migrated_to, migration_tokens=rec.migration_tokens,
        migration_s=_nan(rec.migration_s),
        migration_resume_s=_nan(rec.server_timings.get("migration_resume_s") if rec.migrated_to else None),
        migration_gap_s=_nan(rec.server_timings.get("migration_gap_s") if rec.migrated_to else None),
        decided_by=rec.decided_by,
    )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def write_requests_csv(path: str | Path, results: Results) -> None:
    """Write one row per planned request (daemons/rundir/requests.py)."""
    write_requests(path, (request_row(r) for r in results.records))


def write_summary_json(path: str | Path, results: Results) -> None:
    """The summary, including `t0_wall_s`, as one JSON object."""
    Path(path).write_text(json.dumps(results.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
