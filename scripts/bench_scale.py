#!/usr/bin/env python3
"""Benchmark how many real nodes one machine runs: memory per daemon, and the largest local cluster.

1. **Memory per node, same run** (the baseline and the ratio): one node agent with its model
   loaded and a few requests served, first over the HTTP emulator (`backend = "emulator"`: the
   node agent plus one `schedctl start emulator` process per loaded model), then in-process
   (`backend = "emulator-inproc"`: the node alone). RSS and PSS (shared pages split between the
   processes that map them: what one more node really adds) of each process; the ratio is the
   HTTP pair's over the in-process node's.
2. **Growing clusters**: `schedctl experiment run --nodes N --backend emulator-inproc` for each
   size (8, 16, 32, 64 by default), centralized, at a bounded load of `--rps-per-node` x N
   requests/s (Poisson) for `--duration` seconds. A size passes when the run's mean CPU over
   the load window stays under 80 % of the host and at least 99 % of its requests succeed. The
   CPU is the run's own process tree (host.csv's `schedctl_cpu`: the runner, the coordinator,
   the nodes) by default; `--cpu-basis host` takes the whole host's (`host_cpu`), which on a
   shared machine counts everyone else's work too. The clusters grow until a size fails.
   Each size's node agents are sampled (RSS, PSS) while the load runs.
3. With `--http-baseline` (the default outside --quick), the smallest size also runs on HTTP
   emulators: its CPU beside the in-process run's (a second ratio, same run).

    python scripts/bench_scale.py --quick                    # CI: memory of one node each way, a 2-node cluster
    nice -n 10 python scripts/bench_scale.py                 # 8, 16, 32, 64 nodes
    python scripts/bench_scale.py --sizes 16 32 --rps-per-node 0.2 --duration 60

The output ends with exactly one line of JSON: the figures, the largest cluster that passed,
and this host's size (cores, memory) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from daemons.bus.client import Client
from daemons.core.messages import Done, Infer
from daemons.core.process import schedctl_executable
from daemons.node.testing import NodeProcess, running_node
from daemons.rundir.hosts import read_hosts
from daemons.rundir.requests import OK, read_requests

MODEL = "facebook/opt-125m"
GOAL_CPU = 0.80
GOAL_SUCCESS = 0.99
MiB = 2**20


# ----- 1. memory of one node, each way ------------------------------------------------------
def process_memory(proc: psutil.Process) -> dict[str, float]:
    """RSS and PSS of one process, MiB (PSS: 0 where smaps cannot be read)."""
    try:
        full = proc.memory_full_info()
        return {"rss_mib": full.rss / MiB, "pss_mib": getattr(full, "pss", 0) / MiB}
    except psutil.AccessDenied:
        return {"rss_mib": proc.memory_info().rss / MiB, "pss_mib": 0.0}


def serve_a_few(node: NodeProcess, n: int) -> None:
    """Load the model and serve `n` requests, so the figures are a working node's, not an idle one's."""
    with Client(node.bind) as client:
        for k in range(n):
            client.send(Infer(f"m{k}", MODEL, "a few words of prompt " * 20, 32), f"m{k}")
            last = client.until({"done", "error"}, timeout_s=60)[-1].body
            if not isinstance(last, Done):
                raise RuntimeError(f"request m{k} failed on the {node.bind} node: {last}")


def one_node(tmp: Path, backend: str, requests: int) -> dict[str, Any]:
    with running_node(tmp, f"mem-{backend}", models=[MODEL], checkpoint_tier="dram", backend=backend,
                      publish_to=[]) as node:
        serve_a_few(node, requests)
        time.sleep(0.5)
        agent = psutil.Process(node.proc.pid)
        own = process_memory(agent)
        instances = [process_memory(p) for p in agent.children(recursive=True)]
        return {"backend": backend, "node_agent": own, "instances": instances, "processes": 1 + len(instances),
                "total_rss_mib": own["rss_mib"] + sum(i["rss_mib"] for i in instances),
                "total_pss_mib": own["pss_mib"] + sum(i["pss_mib"] for i in instances)}


# ----- 2. growing clusters ---------------------------------------------------------------------
@dataclass
class DaemonSampler:
    """RSS / PSS of the node agents and emulator processes under `root`, every `every_s`, while it runs."""

    root: int
    every_s: float = 3.0
    peak: dict[int, dict[str, float]] = field(default_factory=dict)  # pid -> the largest figures seen
    kind: dict[int, str] = field(default_factory=dict)  # pid -> node | emulator
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> DaemonSampler:
        self._thread = threading.Thread(target=self._run, name="daemon-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                procs = psutil.Process(self.root).children(recursive=True)
            except psutil.Error:
                return
            for proc in procs:
                try:
                    kind = started(proc.cmdline())
                    if kind not in ("node", "emulator"):
                        continue
                    figures = process_memory(proc)
                except psutil.Error:
                    continue
                self.kind[proc.pid] = kind
                seen = self.peak.setdefault(proc.pid, figures)
                for key, value in figures.items():
                    seen[key] = max(seen[key], value)

    def median(self, key: str, kind: str = "node") -> float:
        values = [p[key] for pid, p in self.peak.items() if self.kind[pid] == kind]
        return statistics.median(values) if values else float("nan")

    def per_node(self, key: str, nodes: int) -> float:
        """Every node agent's and emulator's peak, summed, per node: what one node of the cluster costs."""
        return sum(p[key] for p in self.peak.values()) / max(nodes, 1)

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kind.values() if k == kind)


def started(argv: list[str]) -> str:
    """The daemon a `schedctl start DAEMON ...` command line starts ("" for any other)."""
    return argv[argv.index("start") + 1] if "start" in argv[:-1] else ""


def run_cluster(out: Path, nodes: int, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """One `schedctl experiment run` of `nodes` nodes; its CPU, success and node memory."""
    name = f"scale{nodes}{'' if backend == 'emulator-inproc' else 'http'}"
    rps = round(args.rps_per_node * nodes, 4)
    command = [schedctl_executable(), "experiment", "run", "--nodes", str(nodes), "--backend", backend,
               "--scheduler", args.scheduler, "--duration", f"{args.duration:g}", "--rps", f"{rps:g}",
               "--cv", "1", "--seed", "11", "--name", name, "--results-dir", str(out),
               "--timeout", f"{args.timeout:g}", *(["--insecure"] if args.insecure else [])]
    began = time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with DaemonSampler(proc.pid) as sampler:
            try:
                code = proc.wait(args.duration + args.timeout + 300)
            except subprocess.TimeoutExpired:
                proc.terminate()
                code = proc.wait(60)
    run_dir = next(iter(sorted(out.glob(f"{name}_{args.scheduler}_*"))), None)
    row: dict[str, Any] = {"nodes": nodes, "backend": backend, "rps": rps, "exit_code": code,
                           "wall_s": round(time.monotonic() - began, 1),
                           "node_rss_mib": round(sampler.median("rss_mib"), 1),
                           "node_pss_mib": round(sampler.median("pss_mib"), 1),
                           "emulators": sampler.count("emulator"),
                           "emulator_rss_mib": round(sampler.median("rss_mib", "emulator"), 1)
                           if sampler.count("emulator") else None,
                           "per_node_rss_mib": round(sampler.per_node("rss_mib", nodes), 1),
                           "per_node_pss_mib": round(sampler.per_node("pss_mib", nodes), 1)}
    if code != 0 or run_dir is None or not (run_dir / "requests.csv").exists():
        tail = (out / f"{name}.log").read_text()[-1500:]
        return {**row, "passed": False, "why": f"the run failed (exit {code}): {tail}"}
    requests = read_requests(run_dir / "requests.csv")
    hosts = read_hosts(run_dir / "host.csv")
    basis = [h.host_cpu if args.cpu_basis == "host" else h.schedctl_cpu for h in hosts]
    success = sum(r.status == OK for r in requests) / max(len(requests), 1)
    cpu = statistics.fmean(basis) if basis else float("nan")
    row.update({"requests": len(requests), "success": round(success, 4), "cpu_mean": round(cpu, 4),
                "cpu_p90": round(_quantile(basis, 0.9), 4),
                "run_cpu_mean": round(_mean(h.schedctl_cpu for h in hosts), 4),
                "host_cpu_mean": round(_mean(h.host_cpu for h in hosts), 4),
                "processes": max((h.processes for h in hosts if h.processes is not None), default=0)})
    row["passed"] = bool(cpu < GOAL_CPU and success >= GOAL_SUCCESS)
    if not row["passed"]:
        row["why"] = f"cpu {cpu:.0%} (goal < {GOAL_CPU:.0%}), success {success:.2%} (goal >= {GOAL_SUCCESS:.0%})"
    return row


def _mean(values: Any) -> float:
    got = [v for v in values if v == v]
    return statistics.fmean(got) if got else float("nan")


def _quantile(values: list[float], q: float) -> float:
    got = sorted(v for v in values if v == v)
    return got[min(int(q * len(got)), len(got) - 1)] if got else float("nan")


# ----- report ------------------------------------------------------------------------------
def say_memory(m: dict[str, Any]) -> None:
    agent = m["node_agent"]
    parts = [f"node agent RSS {agent['rss_mib']:.1f} MiB (PSS {agent['pss_mib']:.1f})"]
    parts += [f"emulator RSS {i['rss_mib']:.1f} MiB (PSS {i['pss_mib']:.1f})" for i in m["instances"]]
    print(f"{m['backend']:16s} {m['processes']} process(es): " + ", ".join(parts)
          + f"; per node {m['total_rss_mib']:.1f} MiB RSS, {m['total_pss_mib']:.1f} MiB PSS")


def say_cluster(r: dict[str, Any]) -> None:
    if "success" not in r:
        print(f"{r['nodes']:4d} nodes ({r['backend']}): FAILED {r['why']}")
        return
    print(f"{r['nodes']:4d} nodes ({r['backend']}, {r['rps']:g} rps, {r['requests']} requests): "
          f"success {r['success']:.2%}, run CPU {r['run_cpu_mean']:.0%} of the host (p90 {r['cpu_p90']:.0%}), "
          f"host CPU {r['host_cpu_mean']:.0%}; node agent RSS {r['node_rss_mib']:.1f} MiB (PSS {r['node_pss_mib']:.1f})"
          + (f", {r['emulators']} emulators of RSS {r['emulator_rss_mib']:.1f} MiB" if r["emulators"] else "")
          + f", per node {r['per_node_rss_mib']:.1f} MiB RSS ({r['per_node_pss_mib']:.1f} PSS); {r['wall_s']:.0f} s"
          + f"  -> {'pass' if r['passed'] else 'FAIL: ' + r['why']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI: one node each way, then one 2-node cluster for 4 s")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="cluster sizes (8 16 32 64; quick: 2)")
    p.add_argument("--rps-per-node", type=float, default=0.0, help="load per node, requests/s (0.1; quick: 0.5)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of arrivals per size (30; quick: 4)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds (60)")
    p.add_argument("--scheduler", default="centralized", choices=["centralized", "gossip"])
    p.add_argument("--cpu-basis", default="run", choices=["run", "host"],
                   help="whose CPU the 80%% goal counts: the run's process tree (run) or the whole host")
    p.add_argument("--http-baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the smallest size on HTTP emulators (default: on, off with --quick)")
    p.add_argument("--insecure", action="store_true", help="clusters without CURVE")
    p.add_argument("--keep", type=Path, default=None, help="keep the results directories here")
    args = p.parse_args()
    sizes = args.sizes or ([2] if args.quick else [8, 16, 32, 64])
    args.duration = args.duration or (4.0 if args.quick else 30.0)
    args.rps_per_node = args.rps_per_node or (0.5 if args.quick else 0.1)
    http_baseline = args.http_baseline if args.http_baseline is not None else not args.quick
    cores, memory = psutil.cpu_count() or 1, psutil.virtual_memory().total
    print(f"host: {cores} CPUs, {memory / 2**30:.1f} GiB; load average {os.getloadavg()[0]:.2f} at the start "
          "(a shared machine's other work shows in host CPU, not in the run's)")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        memory_rows = [one_node(tmp, backend, 3 if args.quick else 10) for backend in ("emulator", "emulator-inproc")]
        for m in memory_rows:
            say_memory(m)
        http, inproc = memory_rows
        ratios = {"rss": http["total_rss_mib"] / inproc["total_rss_mib"],
                  "pss": http["total_pss_mib"] / inproc["total_pss_mib"] if inproc["total_pss_mib"] else None}
        print(f"memory per node, HTTP pair / in-process: {ratios['rss']:.2f}x RSS"
              + (f", {ratios['pss']:.2f}x PSS" if ratios["pss"] else ""))
        clusters: list[dict[str, Any]] = []
        if http_baseline:
            clusters.append(run_cluster(tmp, sizes[0], "emulator", args))
            say_cluster(clusters[-1])
        for n in sizes:
            clusters.append(run_cluster(tmp, n, "emulator-inproc", args))
            say_cluster(clusters[-1])
            if not clusters[-1]["passed"]:
                break  # a larger cluster on the same host does no better
    passed = [c["nodes"] for c in clusters if c["backend"] == "emulator-inproc" and c["passed"]]
    largest = max(passed, default=0)
    cpu_ratio = None
    if http_baseline and len(clusters) > 1 and "run_cpu_mean" in clusters[0] and "run_cpu_mean" in clusters[1]:
        cpu_ratio = clusters[0]["run_cpu_mean"] / max(clusters[1]["run_cpu_mean"], 1e-9)
        print(f"run CPU at {sizes[0]} nodes, HTTP emulators / in-process: {cpu_ratio:.2f}x")
    print(f"largest real cluster on this host ({cores} CPUs, {memory / 2**30:.1f} GiB): {largest} nodes "
          f"(run CPU < {GOAL_CPU:.0%}, success >= {GOAL_SUCCESS:.0%}, {args.rps_per_node:g} rps per node)")
    print(json.dumps({"host": {"cpus": cores, "memory_gib": round(memory / 2**30, 1)},
                      "memory": memory_rows, "memory_ratio_http_over_inproc": ratios,
                      "clusters": clusters, "cpu_ratio_http_over_inproc": cpu_ratio,
                      "largest_cluster": largest, "goal": {"cpu_below": GOAL_CPU, "success_at_least": GOAL_SUCCESS,
                                                           "cpu_basis": args.cpu_basis}}, sort_keys=True))
    return 0 if largest else 1


if __name__ == "__main__":
    sys.exit(main())
