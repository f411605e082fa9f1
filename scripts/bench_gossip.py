#!/usr/bin/env python3
"""Benchmark the gossip layer: real peers on loopback, then the simulated network vs N.

Part (a), real: N agent processes (`python -m daemons.gossip.testing`, default N = 32,
LAN preset) on 127.0.0.1. Measures convergence, the time for one peer's record
change to reach all others (p50 / p99 over several changes), bytes per second per
peer, false DEAD verdicts while a CPU hog runs beside the cluster, and the time
until every peer knows that a `kill -9`ed peer is dead.

Part (b), simulated (deterministic, virtual clock): N = 16, 64, 256, 1000. Measures
gossip rounds to full dissemination, detection times (first DEAD, all know),
false positives and simulated bytes per second per peer under record churn, and
compares them with the goals:

- dissemination p99 <= 2 * log2(N) gossip rounds;
- all-know detection p99 <= 1.5 x the memberlist model (a Monte-Carlo model of memberlist's LAN defaults; N > 64
  derived as suspicion_min(N) + the model's 6.3 s offset at N = 64);
- zero false positives;
- <= 20 KB/s per peer at N = 64 (simulated bytes, record churn).

Usage::

    python scripts/bench_gossip.py            # full: a few minutes (hog 120 s)
    python scripts/bench_gossip.py --quick    # CI: a few seconds, tiny N

It prints a readable table and ends with exactly one line of JSON holding every
figure and goal verdict. Every loop is bounded in count and time, and every
process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemons.gossip.config import GossipConfig  # noqa: E402
from daemons.gossip.memberlist import EventKind  # noqa: E402
from daemons.gossip.messages import Status  # noqa: E402
from daemons.gossip.simnet import SimEvent, SimNetwork  # noqa: E402
from daemons.gossip.testing import PeerCluster, free_ports  # noqa: E402

# a Monte-Carlo model of memberlist's LAN defaults: N -> (all-know p50, all-know p99) seconds.
MODEL_ALL_KNOW = {4: (6.1, 7.9), 8: (6.2, 8.8), 16: (7.1, 10.5), 32: (8.4, 12.1), 64: (9.7, 13.5)}
BANDWIDTH_GOAL_BPS = 20_000


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no data)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def model_all_know(n: int, cfg: GossipConfig) -> tuple[float, float, str]:
    """(p50, p99, source) of the memberlist model's 'all nodes know' time for `n` (scaled to cfg)."""
    scale = cfg.probe_interval / GossipConfig.lan().probe_interval
    if n in MODEL_ALL_KNOW:
        p50, p99 = MODEL_ALL_KNOW[n]
        return p50 * scale, p99 * scale, "a Monte-Carlo model of memberlist's LAN defaults"
    lan = GossipConfig.lan()
    near = min(MODEL_ALL_KNOW, key=lambda k: abs(math.log(k) - math.log(n)))
    p50, p99 = MODEL_ALL_KNOW[near]
    off50, off99 = p50 - lan.suspicion_min(near), p99 - lan.suspicion_min(near)
    base = lan.suspicion_min(n)
    return (base + off50) * scale, (base + off99) * scale, f"derived: suspicion_min + offset at N={near}"


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ============================================================================ part (a): real peers
def bench_real(n: int, preset: str, changes: int, hog_seconds: float, hogs: int, churn: float) -> dict[str, Any]:
    cfg = GossipConfig.preset(preset)
    out: dict[str, Any] = {"n": n, "preset": preset, "churn_s": churn, "hog_seconds": hog_seconds, "hogs": hogs}
    cluster = PeerCluster()
    ids = [f"p{i}" for i in range(n)]
    try:
        ports = free_ports(n)
        seeds = [f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[1 % n]}"]
        t_start = time.monotonic()
        for i, node_id in enumerate(ids):
            cluster.spawn(node_id, ports[i], [s for s in seeds if not s.endswith(f":{ports[i]}")], preset,
                          ["--churn", str(churn)] if churn > 0 else [])
        everyone = set(ids)
        ok = cluster.wait_for(
            lambda: all(cluster.alive_view(p) == everyone - {p} for p in ids), 60.0 + 0.5 * n,
        )
        out["converged"] = ok
        out["converge_s"] = round(time.monotonic() - t_start, 2)
        if not ok:
            return out

        # --- dissemination of one peer's record change
        rng = random.Random(7)
        latencies: list[float] = []
        for k in range(changes):
            owner = rng.choice(ids)
            mark = time.time()
            cluster.peers[owner].send({"cmd": "record", "body": {"bench_change": k, "queue_depth": k}})

            def published(owner: str = owner, mark: float = mark) -> dict[str, Any] | None:
                for ev in cluster.events(owner):
                    if ev["kind"] == "record-updated" and ev["node"] == owner and ev["t"] >= mark:
                        return ev
                return None

            if not cluster.wait_for(lambda: published() is not None, 10.0):
                continue
            pub = published()
            assert pub is not None

            def receipts(owner: str = owner, pub: dict[str, Any] = pub) -> list[float]:
                times = []
                for p in ids:
                    if p == owner:
                        continue
                    hit = [e["t"] for e in cluster.events(p) if e["kind"] == "record-updated"
                           and e["node"] == owner and (e["ver"] or 0) >= pub["ver"]]
                    if hit:
                        times.append(min(hit))
                return times

            if cluster.wait_for(lambda: len(receipts()) == n - 1, 15.0 * cfg.probe_interval + 5.0):
                latencies.append(max(receipts()) - pub["t"])
            time.sleep(min(1.0, 3 * cfg.gossip_interval))
        out["dissemination_s"] = {
            "samples": len(latencies), "p50": pct(latencies, 50), "p99": pct(latencies, 99),
            "max": max(latencies) if latencies else None,
        }

        # --- bandwidth and false positives with a CPU hog beside the cluster
        before = cluster.stats()
        t0 = time.time()
        cluster.start_hogs(hogs, hog_seconds)
        time.sleep(hog_seconds)
        after = cluster.stats()
        dt = time.time() - t0
        rates_out = [(after[p]["bytes_out"] - before[p]["bytes_out"]) / dt for p in after if p in before]
        rates_in = [(after[p]["bytes_in"] - before[p]["bytes_in"]) / dt for p in after if p in before]
        false_dead, suspects = 0, 0
        for p in ids:
            for ev in cluster.events(p):
                if ev["t"] >= t0:
                    false_dead += ev["kind"] == "dead"
                    suspects += ev["kind"] == "suspect"
        out["hog"] = {
            "false_dead": false_dead, "suspect_events": suspects,
            "bytes_out_per_peer_s": statistics.mean(rates_out) if rates_out else None,
            "bytes_in_per_peer_s": statistics.mean(rates_in) if rates_in else None,
            "max_health": max((s["health"] for s in after.values()), default=None),
        }

        # --- kill -9 one peer (not a seed): time until every other peer knows it is dead
        victim = ids[-1]
        t_kill = time.time()
        cluster.kill9(victim)
        survivors = [p for p in ids if p != victim]

        def dead_times() -> list[float]:
            times = []
            for p in survivors:
                hit = [e["t"] for e in cluster.events(p) if e["kind"] == "dead" and e["node"] == victim]
                if hit:
                    times.append(min(hit))
            return times

        p50, p99, source = model_all_know(max(4, n), cfg)
        bound = 1.5 * p99
        cluster.wait_for(lambda: len(dead_times()) == len(survivors), max(60.0, 4 * bound))
        times = dead_times()
        out["kill9"] = {
            "victim": victim,
            "first_dead_s": min(times) - t_kill if times else None,
            "all_know_s": max(times) - t_kill if len(times) == len(survivors) else None,
            "model_p50_s": p50, "model_p99_s": p99, "bound_s": bound, "model": source,
        }
        false_after = sum(
            1 for p in survivors for e in cluster.events(p)
            if e["kind"] == "dead" and e["node"] != victim and e["t"] >= t_kill
        )
        out["false_dead_total"] = false_dead + false_after
        return out
    finally:
        cluster.close()


# ============================================================================ part (b): simulation
def sim_record(i: int, q: int) -> dict[str, Any]:
    return {
        "gpus": [{"idx": 0, "mem_total": 85899345920, "mem_used": q << 28, "util": round(q / 64, 2)}],
        "queue_depth": q,
        "models": ["meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"],
        "endpoint": f"tcp://10.0.{i // 250}.{i % 250}:5560",
    }


def bench_sim(n: int, changes: int, kills: int, churn_s: float, churn_window: float, seed: int) -> dict[str, Any]:
    cfg = GossipConfig.lan()
    wall0 = time.monotonic()
    net = SimNetwork(cfg, seed=seed, measure_bytes=True, keep_events=False)
    rng = random.Random(seed)
    ids = [f"n{i}" for i in range(n)]
    for i, node_id in enumerate(ids):
        net.add_node(node_id, record=sim_record(i, 0))
    net.bootstrap()
    net.run_for(3.0)
    out: dict[str, Any] = {"n": n}

    # --- dissemination: one record change in a quiet cluster, rounds until all hold it
    holders: dict[str, int] = {}
    published: dict[str, float] = {}
    watch: dict[str, Any] = {"owner": None, "ver": 0}

    def on_event(e: SimEvent) -> None:
        ev = e.event
        if ev.kind is EventKind.RECORD_UPDATED and ev.node == watch["owner"] and ev.record is not None:
            if ev.record.ver >= watch["ver"] > 0 and e.observer != ev.node:
                holders.setdefault(e.observer, 0)
            if e.observer == ev.node and ev.record.ver == watch["ver"]:
                published["t"] = e.time
        if ev.kind is EventKind.DEAD:
            dead_events.append((e.time, e.observer, ev.node))

    dead_events: list[tuple[float, str, str]] = []
    net.listeners.append(on_event)
    rounds: list[float] = []
    owners = rng.sample(ids, min(changes, n))
    for k, owner in enumerate(owners):
        holders.clear()
        published.clear()
        ml = net.ml(owner)
        cur = ml.local_record
        watch["owner"], watch["ver"] = owner, (cur.ver if cur else 0) + 1
        net.set_record(owner, sim_record(ids.index(owner), k + 1))
        net.run_for(30.0, until=lambda: "t" in published, check_every=0.01)
        if "t" not in published:
            continue
        t_pub = published["t"]
        if net.run_for(30.0, until=lambda: len(holders) >= n - 1, check_every=0.01):
            rounds.append((net.now - t_pub) / cfg.gossip_interval)
        watch["owner"] = None
        net.run_for(1.0)
    goal_rounds = 2 * math.log2(n)
    out["dissemination_rounds"] = {
        "samples": len(rounds), "p50": pct(rounds, 50), "p99": pct(rounds, 99), "goal": goal_rounds,
    }

    # --- detection of killed members, one at a time
    first_s: list[float] = []
    all_s: list[float] = []
    victims = rng.sample(ids, min(kills, n - 2))
    net.reset_counters()
    t_quiet = net.now
    for victim in victims:
        net.kill(victim)
        t0 = net.now
        observers = [x for x in net.up_nodes()]
        ok = net.run_until(t0 + 180.0, until=lambda v=victim, o=observers: net.all_see(v, Status.DEAD, o),
                           check_every=0.1)
        firsts = [t for t, _, node in dead_events if node == victim and t >= t0]
        if firsts:
            first_s.append(min(firsts) - t0)
        if ok:
            all_s.append(net.now - t0)
        net.run_for(2.0)
    quiet_bps = statistics.mean(nd.bytes_out for nd in net.nodes.values() if nd.up) / max(1e-9, net.now - t_quiet)
    false_dead = sum(1 for _, _, node in dead_events if node not in victims)
    m50, m99, source = model_all_know(n, cfg)
    out["detection_s"] = {
        "samples": len(all_s), "first_p50": pct(first_s, 50), "first_p99": pct(first_s, 99),
        "all_p50": pct(all_s, 50), "all_p99": pct(all_s, 99), "model_all_p50": m50, "model_all_p99": m99,
        "bound": 1.5 * m99, "model": source, "timeouts": len(victims) - len(all_s),
    }
    out["quiet_bytes_per_peer_s"] = quiet_bps

    # --- bandwidth and staleness under record churn (each member changes every ~churn_s)
    if churn_window > 0:
        up = net.up_nodes()
        stale: list[float] = []
        pub_time: dict[tuple[str, int], float] = {}
        seen: dict[tuple[str, str], int] = {}

        def on_churn(e: SimEvent) -> None:
            ev = e.event
            if ev.kind is not EventKind.RECORD_UPDATED or ev.record is None:
                return
            if e.observer == ev.node:
                pub_time[(ev.node, ev.record.ver)] = e.time
                return
            prev = seen.get((e.observer, ev.node), ev.record.ver - 1)
            for v in range(prev + 1, ev.record.ver + 1):
                t = pub_time.get((ev.node, v))
                if t is not None:
                    stale.append(e.time - t)
            seen[(e.observer, ev.node)] = ev.record.ver

        net.listeners.append(on_churn)

        def churn(i: int) -> Callable[[], None]:
            def step() -> None:
                node_id = ids[i]
                if net.nodes[node_id].up:
                    net.set_record(node_id, sim_record(i, rng.randrange(64)))
                net.at(net.now + rng.expovariate(1.0 / churn_s), step)
            return step

        for node_id in up:
            net.at(net.now + rng.uniform(0, churn_s), churn(ids.index(node_id)))
        net.run_for(5.0)
        net.reset_counters()
        t_c = net.now
        false_before = len(dead_events)
        net.run_for(churn_window)
        dt = net.now - t_c
        out["churn"] = {
            "record_change_every_s": churn_s, "window_s": churn_window,
            "bytes_out_per_peer_s": statistics.mean(net.nodes[x].bytes_out for x in up) / dt,
            "bytes_in_per_peer_s": statistics.mean(net.nodes[x].bytes_in for x in up) / dt,
            "msgs_out_per_peer_s": statistics.mean(net.nodes[x].msgs_out for x in up) / dt,
            "staleness_p50_s": pct(stale, 50), "staleness_p99_s": pct(stale, 99),
        }
        false_dead += sum(1 for _, _, node in dead_events[false_before:] if node not in victims)
    out["false_dead"] = false_dead
    out["virtual_s"] = round(net.now, 1)
    out["wall_s"] = round(time.monotonic() - wall0, 2)
    return out


# ============================================================================ report
def goals(real: dict[str, Any] | None, sims: dict[str, dict[str, Any]]) -> dict[str, Any]:
    g: dict[str, Any] = {}
    for key, s in sims.items():
        d = s["dissemination_rounds"]
        g[f"sim{key}_dissemination"] = d["p99"] is not None and d["p99"] <= d["goal"]
        det = s["detection_s"]
        within = det["all_p99"] is not None and det["all_p99"] <= det["bound"]
        g[f"sim{key}_detection"] = det["timeouts"] == 0 and within
        g[f"sim{key}_no_false_positives"] = s["false_dead"] == 0
    if "64" in sims and "churn" in sims["64"]:
        g["sim64_bandwidth"] = sims["64"]["churn"]["bytes_out_per_peer_s"] <= BANDWIDTH_GOAL_BPS
    if real is not None:
        k = real.get("kill9", {})
        g["real_converged"] = bool(real.get("converged"))
        g["real_detection"] = k.get("all_know_s") is not None and k["all_know_s"] <= k["bound_s"]
        g["real_no_false_dead"] = real.get("false_dead_total") == 0
    g["all"] = all(v for v in g.values())
    return g


def print_tables(real: dict[str, Any] | None, sims: dict[str, dict[str, Any]], verdicts: dict[str, Any]) -> None:
    if real is not None:
        print(f"\n(a) real peers on loopback: N={real['n']} preset={real['preset']} churn={real['churn_s']}s")
        print(f"  converged: {real.get('converged')} in {real.get('converge_s')} s")
        d = real.get("dissemination_s", {})
        print(f"  record change -> all peers: p50 {fmt(d.get('p50'))} s  p99 {fmt(d.get('p99'))} s"
              f"  ({d.get('samples', 0)} changes)")
        h = real.get("hog", {})
        print(f"  with {real['hogs']} CPU hog(s) for {real['hog_seconds']} s: false DEAD {h.get('false_dead')},"
              f" suspect events {h.get('suspect_events')}, max health {h.get('max_health')}")
        print(f"  bytes/s per peer: out {fmt(h.get('bytes_out_per_peer_s'), 0)}"
              f"  in {fmt(h.get('bytes_in_per_peer_s'), 0)}")
        k = real.get("kill9", {})
        print(f"  kill -9 {k.get('victim')}: first DEAD {fmt(k.get('first_dead_s'))} s,"
              f" all know {fmt(k.get('all_know_s'))} s  (model p50/p99 {fmt(k.get('model_p50_s'))}/"
              f"{fmt(k.get('model_p99_s'))} s, bound {fmt(k.get('bound_s'))} s)")
    if sims:
        print("\n(b) simulated network (LAN preset, virtual time)")
        hdr = (f"  {'N':>5} {'rounds p50':>10} {'p99':>6} {'goal':>5} | {'first p50':>9} {'all p50':>7} {'all p99':>7}"
               f" {'bound':>6} | {'FP':>3} | {'B/s quiet':>9} {'B/s churn':>9} {'stale p99':>9} | {'wall s':>6}")
        print(hdr)
        for s in sims.values():
            d, det, ch = s["dissemination_rounds"], s["detection_s"], s.get("churn", {})
            print(f"  {s['n']:>5} {fmt(d['p50'], 1):>10} {fmt(d['p99'], 1):>6} {d['goal']:>5.1f} |"
                  f" {fmt(det['first_p50']):>9} {fmt(det['all_p50']):>7} {fmt(det['all_p99']):>7}"
                  f" {det['bound']:>6.1f} | {s['false_dead']:>3} | {s['quiet_bytes_per_peer_s']:>9.0f}"
                  f" {fmt(ch.get('bytes_out_per_peer_s'), 0):>9} {fmt(ch.get('staleness_p99_s')):>9}"
                  f" | {s['wall_s']:>6}")
    print("\ngoals: " + ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in verdicts.items() if k != "all"))
    print(f"all goals met: {verdicts['all']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI mode: a few seconds, tiny N")
    p.add_argument("--real-n", type=int, help="real peers (default 32; quick 4)")
    p.add_argument("--preset", help="real peers' preset (default lan; quick ci)")
    p.add_argument("--changes", type=int, help="record changes measured (default 10; quick 3)")
    p.add_argument("--hog-seconds", type=float, help="CPU hog phase (default 120; quick 2)")
    p.add_argument("--hogs", type=int, default=1, help="CPU hog processes")
    p.add_argument("--churn", type=float, default=2.0, help="record change period per peer, seconds")
    p.add_argument("--sim-sizes", help="comma-separated N (default 16,64,256,1000; quick 16,64)")
    p.add_argument("--sim-kills", type=int, help="kills per N (default 5; quick 2)")
    p.add_argument("--churn-window", type=float, help="simulated churn window, s (default 30; quick 5)")
    p.add_argument("--churn-max-n", type=int, default=256, help="largest simulated N that runs the churn phase")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-sim", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    q = a.quick
    real_n = a.real_n or (4 if q else 32)
    preset = a.preset or ("ci" if q else "lan")
    changes = a.changes or (3 if q else 10)
    hog_seconds = a.hog_seconds if a.hog_seconds is not None else (2.0 if q else 120.0)
    sizes = [int(x) for x in (a.sim_sizes or ("16,64" if q else "16,64,256,1000")).split(",")]
    kills = a.sim_kills or (2 if q else 5)
    window = a.churn_window if a.churn_window is not None else (5.0 if q else 30.0)
    churn = a.churn * (GossipConfig.preset(preset).probe_interval if preset == "ci" else 1.0)

    t0 = time.monotonic()
    real = None
    if not a.skip_real:
        print(f"(a) starting {real_n} real peers ({preset}) ...", flush=True)
        real = bench_real(real_n, preset, changes, hog_seconds, a.hogs, churn)
    sims: dict[str, dict[str, Any]] = {}
    if not a.skip_sim:
        for n in sizes:
            print(f"(b) simulating N={n} ...", flush=True)
            sims[str(n)] = bench_sim(
                n, changes=min(changes, 5) if n >= 1000 else changes, kills=min(kills, 3) if n >= 1000 else kills,
                churn_s=a.churn, churn_window=window if n <= a.churn_max_n else 0.0, seed=a.seed,
            )
    verdicts = goals(real, sims)
    print_tables(real, sims, verdicts)
    result = {
        "bench": "gossip", "mode": "quick" if q else "full", "wall_s": round(time.monotonic() - t0, 1),
        "real": real, "sim": sims, "goals": verdicts,
    }
    print(json.dumps(result, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
