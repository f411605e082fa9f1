#!/usr/bin/env python3
"""Chaos soak: random kills, pauses, restarts and partitions on both arms, then invariants.

For each arm (centralized with a standby coordinator, and gossip) it runs
`schedctl experiment run` for `--minutes` with `--fault` entries drawn from `--seed`
(the kinds of cli/experiment/faults.py; partitions only as root, through the local
cluster's network namespaces, else skipped with a note), samples the RSS of every daemon
of the run while it goes, and then checks the results directory:

- exactly one outcome per planned request (requests.csv against schedule.csv);
- no duplicate or missing token: a request that ended ok with finish reason `length`
  has exactly its planned tokens, and none has more;
- at most one coordinator placed requests in each epoch (requests.csv) and GPU memory
  never exceeds its total (nodes.csv);
- memory bounded: no daemon's RSS above `--max-rss-mb`.

It prints the faults injected, the requests and their outcomes, and every violation; it
exits 1 if there is one. A killed or stopped process stays down until its run ends
(faults.py), so permanent faults are kept to fewer than half the nodes.

    python scripts/chaos_soak.py                  # 10 minutes per arm
    python scripts/chaos_soak.py --minutes 0.4    # CI: a short run of each arm
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SCHEDCTL = str(Path(sys.executable).parent / "schedctl")
TEMPORARY = ("pause", "restart", "partition")
PERMANENT = ("kill", "stop")


@dataclass
class Arm:
    scheduler: str
    faults: list[str]
    run_dir: Path | None = None
    rc: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_faults(rng: random.Random, duration_s: float, nodes: int, scheduler: str, partitions: bool) -> list[str]:
    """About one fault per 15 s, never two at once on one target, permanent ones on fewer
    than half the nodes; the centralized arm also pauses and kills a coordinator once."""
    kinds = ["pause", "restart", "kill", "stop"] + (["partition"] if partitions else [])
    busy: dict[str, float] = defaultdict(float)  # target -> free again at
    down: set[str] = set()
    out: list[str] = []
    t = 3.0
    end = duration_s - 3.0
    while True:
        t += rng.uniform(5.0, 20.0)
        if t >= end:
            break
        kind = rng.choice(kinds)
        if kind in PERMANENT and len(down) + 1 > (nodes - 1) // 2:
            kind = rng.choice(TEMPORARY[:2])
        candidates = [f"node-{k}" for k in range(nodes) if f"node-{k}" not in down and busy[f"node-{k}"] <= t]
        if not candidates:
            continue
        target = rng.choice(candidates)
        length = round(rng.uniform(1.0, 6.0), 1)
        length = round(min(length, max(0.5, end - t - 0.5)), 1)
        if kind in PERMANENT:
            down.add(target)
            out.append(f"{t:.1f}:{kind}:{target}")
        elif kind == "restart":
            busy[target] = t + length + 10.0  # a restarted node reloads its models
            out.append(f"{t:.1f}:restart:{target}:{length}")
        else:
            busy[target] = t + length + 1.0
            out.append(f"{t:.1f}:{kind}:{target}:{length}")
    if not out:  # a run too short for the random draw still gets one fault
        out.append(f"{duration_s / 2:.1f}:pause:node-{rng.randrange(nodes)}:2")
    if scheduler == "centralized" and duration_s >= 20:
        out.append(f"{duration_s * 0.3:.1f}:pause:coordinator:2")
        out.append(f"{duration_s * 0.6:.1f}:kill:coordinator")  # the standby takes over
    return out


def sample_rss(root_pid: int, peaks: dict[str, float], stop: threading.Event) -> None:
    """Peak RSS per daemon (by its command line) of the run's process tree, every second."""
    while not stop.wait(1.0):
        try:
            procs = psutil.Process(root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                cmd = p.cmdline()
                rss = p.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            name = " ".join(a for a in cmd[2:5] if not a.startswith("-"))[:40] or p.name()
            if "--config" in cmd:
                name += " " + Path(cmd[cmd.index("--config") + 1]).stem
            peaks[name] = max(peaks.get(name, 0.0), rss)


def run_arm(arm: Arm, duration_s: float, rps: float, nodes: int, seed: int, out: Path) -> None:
    args = [SCHEDCTL, "experiment", "run", "--duration", str(duration_s), "--rps", str(rps), "--cv", "2",
            "--nodes", str(nodes), "--seed", str(seed), "--scheduler", arm.scheduler, "--name", "chaos",
            "--results-dir", str(out), "--timeout", "30"]
    if arm.scheduler == "centralized":
        args.append("--standby-coordinator")
    for f in arm.faults:
        args += ["--fault", f]
    stop = threading.Event()
    with open(out / f"{arm.scheduler}.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, arm.peak_rss_mb, stop), daemon=True)
        sampler.start()
        try:
            arm.rc = proc.wait(timeout=duration_s + 300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            arm.rc = proc.wait(timeout=60)
            arm.violations.append(f"the run did not end within {duration_s + 300:.0f} s")
        finally:
            stop.set()
            sampler.join()
    dirs = sorted(out.glob(f"chaos_{arm.scheduler}_*"))
    arm.run_dir = dirs[-1] if dirs else None
    if arm.rc != 0 or arm.run_dir is None:
        tail = (out / f"{arm.scheduler}.log").read_text(errors="replace")[-1500:]
        arm.violations.append(f"schedctl experiment run exited {arm.rc}: {tail}")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check(arm: Arm, max_rss_mb: float) -> None:
    """The invariants, read from the results directory."""
    if arm.run_dir is None:
        return
    planned = read(arm.run_dir / "schedule.csv")
    rows = read(arm.run_dir / "requests.csv")
    v = arm.violations
    ids = Counter(r["request_id"] for r in rows)
    dupes = [i for i, n in ids.items() if n > 1]
    missing = {p["request_id"] for p in planned} - set(ids)
    extra = set(ids) - {p["request_id"] for p in planned}
    if dupes or missing or extra:
        v.append(f"outcomes: {len(dupes)} duplicated, {len(missing)} missing, {len(extra)} unplanned")
    plan = {p["request_id"]: int(p["max_new_tokens"]) for p in planned}
    for r in rows:
        arm.requests[r["status"] or "(none)"] += 1
        if not r["status"]:
            v.append(f"{r['request_id']}: no outcome")
        if r["status"] == "ok":
            tokens, want = int(r["tokens"] or -1), plan.get(r["request_id"], -1)
            if tokens > want or (r["finish_reason"] == "length" and tokens != want):
                v.append(f"{r['request_id']}: {tokens} tokens done, {want} planned ({r['finish_reason']})")
    by_epoch: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.get("coordinator") and r.get("epoch") not in (None, ""):
            by_epoch[r["epoch"]].add(r["coordinator"])
    for epoch, coords in by_epoch.items():
        if epoch != "0" and len(coords) > 1:
            v.append(f"epoch {epoch}: placements by {sorted(coords)}")
    for n in read(arm.run_dir / "nodes.csv"):
        if n["memory_used"] and n["memory_total"] and int(n["memory_used"]) > int(n["memory_total"]):
            v.append(f"{n['node']} at t={n['t_s']}: GPU memory {n['memory_used']} over {n['memory_total']}")
            break
    for name, peak in arm.peak_rss_mb.items():
        if peak > max_rss_mb:
            v.append(f"{name}: RSS peaked at {peak:.0f} MB (bound {max_rss_mb:.0f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of each arm's run (default 10)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rps", type=float, default=2.0)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--arms", default="centralized,gossip", help="comma-separated: centralized, gossip")
    ap.add_argument("--max-rss-mb", type=float, default=1024.0, help="bound on any daemon's RSS")
    ap.add_argument("--keep", type=Path, default=None, help="keep the results here (default: a temp dir)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    duration = max(10.0, args.minutes * 60)
    partitions = os.geteuid() == 0 and shutil.which("ip") is not None
    rng = random.Random(args.seed)
    out = args.keep or Path(tempfile.mkdtemp(prefix="chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    arms = [Arm(s, plan_faults(rng, duration, args.nodes, s, partitions)) for s in args.arms.split(",")]
    try:
        for arm in arms:
            if not partitions:
                arm.notes.append("no partitions: they need root and iproute2 (cli/experiment/netns.py)")
            run_arm(arm, duration, args.rps, args.nodes, args.seed, out)
            check(arm, args.max_rss_mb)
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    for arm in arms:
        kinds = Counter(f.split(":")[1] for f in arm.faults)
        peak = max(arm.peak_rss_mb.values(), default=0.0)
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(arm.requests.items()))
        print(f"== {arm.scheduler}: {duration:.0f} s, {len(arm.faults)} faults injected "
              f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
              f"{sum(arm.requests.values())} requests ({outcomes}); "
              f"peak daemon RSS {peak:.0f} MB; {len(arm.violations)} violations")
        for note in arm.notes:
            print(f"   note: {note}")
        for line in arm.violations[:20]:
            print(f"   VIOLATION {line}")
    print(json.dumps({"seed": args.seed, "duration_s": duration, "arms": {
        a.scheduler: {"faults": a.faults, "requests": dict(a.requests), "violations": a.violations,
                      "peak_rss_mb": round(max(a.peak_rss_mb.values(), default=0.0), 1)} for a in arms}}))
    return 1 if any(a.violations for a in arms) else 0


if __name__ == "__main__":
    sys.exit(main())
