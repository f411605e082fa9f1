"""Small results directories with hand-computable numbers, as the experiment runner writes them."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemons.rundir import RECOVERY, RECOVERY_COLUMNS

REQUEST_HEADER = ["request_id", "model", "prompt_tokens", "max_new_tokens", "scheduled_s", "sent_s",
                  "placed_s", "first_token_s", "done_s", "node", "action", "hops", "tokens", "status",
                  "error", "migrated_from", "migrated_to", "some_future_column"]
NODE_HEADER = ["t_s", "node", "memory_used", "memory_total", "memory_utilization", "queue_depth",
               "in_flight", "loaded_models", "alive", "gpu_utilization"]
EVENT_HEADER = ["t_s", "kind", "target", "detail"]


def req(rid: str, sched: float, first: float | None, done: float | None, action: str = "SERVE",
        tokens: int = 0, status: str = "ok", error: str = "") -> dict[str, object]:
    """One requests.csv row; None times are empty cells."""
    return {"request_id": rid, "model": "facebook/opt-125m", "prompt_tokens": 16, "max_new_tokens": 32,
            "scheduled_s": sched, "sent_s": sched, "placed_s": "" if not action else sched,
            "first_token_s": "" if first is None else first, "done_s": "" if done is None else done,
            "node": "node-a" if action else "", "action": action, "hops": 0, "tokens": tokens,
            "status": status, "error": error, "some_future_column": "ignored"}


def node(t: float, name: str, util: float, queue: float, alive: int = 1,
         gpu: float | None = None) -> dict[str, object]:
    """One nodes.csv row; `gpu` is the compute utilisation (None: an empty cell, not measured)."""
    return {"t_s": t, "node": name, "memory_used": int(util * 1000), "memory_total": 1000,
            "memory_utilization": util, "queue_depth": queue, "in_flight": queue,
            "loaded_models": "facebook/opt-125m;meta-llama/Llama-2-7b-hf", "alive": alive,
            "gpu_utilization": "" if gpu is None else gpu}


def event(t: float, kind: str, target: str = "", detail: str = "") -> dict[str, object]:
    return {"t_s": t, "kind": kind, "target": target, "detail": detail}


# Dyadic times so TTFT/latency/TPOT are exact in binary floating point.
#   id  sched first done   tokens action      status   ttft  latency tpot
#   r1  0     0.125 1.125  9      SERVE       ok       .125  1.125   .125
#   r2  1     1.25  2.25   5      SERVE       ok       .25   1.25    .25
#   r3  2     2.5   4.5    5      COLD_START  ok       .5    2.5     .5
#   r4  3     4.0   4.0    1      MIGRATE     ok       1.0   1.0     - (tokens 1)
#   r5  4     -     -      0      SERVE       timeout
#   r6  5     -     -      0      (unplaced)  error
# Measured window: first send 0 to the last completion 4.5 (r3) or the later send of r6
# (failed, so it ended no earlier than 5) = 5 s.
# Cache hits: SERVE r1, r2 of the 4 successful requests (r5's SERVE failed): 50 %.
REQUESTS = [
    req("r1", 0, 0.125, 1.125, "SERVE", 9),
    req("r2", 1, 1.25, 2.25, "SERVE", 5),
    req("r3", 2, 2.5, 4.5, "COLD_START", 5),
    {**req("r4", 3, 4.0, 4.0, "MIGRATE", 1), "migrated_from": "node-b", "migrated_to": "node-a"},
    req("r5", 4, None, None, "SERVE", 0, "timeout", "deadline exceeded"),
    req("r6", 5, None, None, "", 0, "error", "no node holds the model"),
]
# node-b is dead at t=2: its sample there (util 0, queue 9) must not count.
# Cluster queue per tick (alive nodes): t=0: 0+1, t=1: 2+3, t=2: 4 -> 1, 5, 4.
NODES = [
    node(0, "node-a", 0.25, 0), node(1, "node-a", 0.5, 2), node(2, "node-a", 0.75, 4),
    node(0, "node-b", 0.5, 1), node(1, "node-b", 1.0, 3), node(2, "node-b", 0.0, 9, alive=0),
]
EVENTS = [
    event(2, "fault", "node-b", "kill -9"),
    event(3, "detected", "node-b", "by=coordinator"),
    event(6, "recovered", "node-b", ""),
    event(7, "fault", "node-a", "sigstop"),
    event(9, "recovered", "node-a", "recovery_s=1.5;detected_s=0.5"),
]

# A recovery.csv for tests of its readers: two faults that recovered after 4 s and 1.5 s
# (mean 2.75 s). write_run leaves it out by default, as the runner does: write_report derives
# it from requests and events, and load_run computes the same without it.
RECOVERIES = [
    {"t_s": 2, "target": "node-b", "fault": "kill", "detection_s": 1, "drain_s": 2.5, "recovery_s": 4,
     "base_success": 1, "base_p99_ttft_s": 0.125},
    {"t_s": 7, "target": "node-a", "fault": "pause", "detection_s": 0.5, "drain_s": 0, "recovery_s": 1.5,
     "base_success": 0.5, "base_p99_ttft_s": 1},
]


def manifest(name: str, scheduler: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name, "scheduler": scheduler, "policy": "least_loaded",
        "start_time": "2025-01-01T12:00:00", "end_time": "2025-01-01T12:00:08", "duration_s": 8.0,
        "seed": 42, "slo": {"ttft_ms": 250, "tpot_ms": 250, "e2el_ms": None},
        "planned_requests": 6, "rps": 1.0,
    }
    doc.update(overrides)
    return doc


def write_csv(path: Path, header: Sequence[str], rows: Sequence[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header), restval="")
        writer.writeheader()
        writer.writerows(rows)


def scaled(requests: Sequence[dict[str, object]], k: float) -> list[dict[str, object]]:
    """The same requests with every time multiplied by `k` (a faster or slower cluster)."""
    times = ("scheduled_s", "sent_s", "placed_s", "first_token_s", "done_s")
    return [{c: (float(str(v)) * k if c in times and v != "" else v) for c, v in r.items()} for r in requests]


def write_run(root: Path, name: str = "exp", scheduler: str = "centralized",
              requests: Sequence[dict[str, object]] = REQUESTS,
              nodes: Sequence[dict[str, object]] = NODES,
              events: Sequence[dict[str, object]] = EVENTS,
              node_header: Sequence[str] = NODE_HEADER,
              recoveries: Sequence[dict[str, object]] | None = None, **manifest_overrides: Any) -> Path:
    """A results directory `root/<name>_<scheduler>_20250101_120000` holding the four files the
    run writes, and a recovery.csv of `recoveries` if given."""
    run_dir = root / f"{name}_{scheduler}_20250101_120000"
    run_dir.mkdir(parents=True)
    write_csv(run_dir / "requests.csv", REQUEST_HEADER, requests)
    write_csv(run_dir / "nodes.csv", node_header, [{k: r[k] for k in node_header} for r in nodes])
    write_csv(run_dir / "events.csv", EVENT_HEADER, events)
    if recoveries is not None:
        write_csv(run_dir / RECOVERY, RECOVERY_COLUMNS, recoveries)
    doc = manifest(name, scheduler, **manifest_overrides)
    (run_dir / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    return run_dir
