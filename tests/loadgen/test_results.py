"""The recorder's rules on their own, and the requests.csv / summary formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from daemons.bus import Envelope
from daemons.core.messages import Done, Error, FirstToken, Placement, StatusRequest
from daemons.loadgen import PlannedRequest, Results, write_requests_csv, write_summary_json
from daemons.loadgen.recorder import Recorder
from daemons.rundir import REQUEST_COLUMNS

SCHEDULE = [PlannedRequest(f"r{i}", 0.1 * i, "m", 8, 4) for i in range(4)]


def env(body: Any) -> Envelope:
    return Envelope(body.TYPE, "test", "", body)


def test_outcome_is_decided_once_and_later_replies_only_counted() -> None:
    rec = Recorder(SCHEDULE, timeout_s=1.0, mode="centralized")
    r0 = rec.records[0]
    rec.on_sent(r0, 0.01)
    action = rec.on_reply(env(Placement("r0", "n", "tcp://x:1", "SERVE", 0.0, "")), 0.02)
    assert action is not None and action[0] is r0
    assert rec.on_reply(env(Placement("r0", "n", "tcp://x:1", "SERVE", 0.0, "")), 0.03) is None
    rec.on_reply(env(FirstToken("r0", "n")), 0.05)
    rec.on_reply(env(Done("r0", "n", 4, "length")), 0.09)
    rec.on_reply(env(Error("r0", "late", "too late")), 0.10)
    rec.on_reply(env(Done("r9", "n", 4, "length")), 0.10)
    rec.on_reply(env(StatusRequest()), 0.10)
    assert (r0.status, r0.ttft_s, r0.latency_s, r0.send_lag_s) == ("ok", 0.05, 0.09, 0.01)
    assert dict(rec.ignored) == {"late": 1, "duplicate": 1, "unknown": 1, "unexpected": 1, "malformed": 0, "stale": 0}


def test_expiry_follows_schedule_order_and_skips_finished() -> None:
    rec = Recorder(SCHEDULE, timeout_s=1.0, mode="gossip")
    for r in rec.records:
        rec.on_sent(r, r.scheduled_s)
    rec.on_reply(env(Error("r0", "oom", "no memory")), 0.2)
    assert rec.next_expiry() == 1.1
    assert rec.expire(1.15) == 1
    assert [r.status for r in rec.records] == ["error", "timeout", "", ""]
    assert rec.records[1].error_detail == "no first token within 1 s"
    rec.cancel(1.2, "stopped")
    assert [r.error for r in rec.records] == ["oom", "timeout", "cancelled", "cancelled"]
    assert rec.in_flight == 0 and rec.finished == 4


def test_requests_csv_and_summary(tmp_path: Path) -> None:
    rec = Recorder(SCHEDULE, timeout_s=1.0, mode="gossip")
    for r in rec.records[:3]:
        rec.on_sent(r, r.scheduled_s + 0.001)
    rec.on_reply(env(FirstToken("r0", "n1")), 0.05)
    rec.on_reply(env(Done("r0", "n1", 4, "length", "SERVE", 1, {"queue_s": 0.01})), 0.08)
    rec.on_reply(env(Error("r1", "oom", "no memory", "n2")), 0.2)
    rec.expire(2.0)
    rec.cancel(2.0, "stopped")
    results = Results(rec.records, "gossip", "lg", 1.7e9, 2.0, dict(rec.ignored))
    write_requests_csv(tmp_path / "requests.csv", results)
    with (tmp_path / "requests.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == REQUEST_COLUMNS
    assert [row["status"] for row in rows] == ["ok", "error", "timeout", "not_sent"]
    ok, err = rows[0], rows[1]
    assert (ok["ttft_s"], ok["latency_s"], ok["hops"], ok["server_timings"]) == ("0.050000", "0.080000", "1",
                                                                              '{"queue_s":0.01}')
    assert (err["done_s"], err["error"], err["error_detail"], err["node"]) == ("", "oom", "no memory", "n2")
    assert rows[3]["sent_s"] == "" and rows[3]["error"] == ""  # never sent: no failure
    write_summary_json(tmp_path / "summary.json", results)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["ok"], summary["error"], summary["timeout"], summary["not_sent"]) == (1, 1, 1, 1)
    assert summary["errors_by_code"] == {"oom": 1}
    assert summary["t0_wall_iso"].startswith("2023-11-14T22:13:20")
    assert summary["latency_ms_p50"] == 80.0 and summary["send_lag_ms_max"] == 1.0
