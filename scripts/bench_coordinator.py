#!/usr/bin/env python3
"""Benchmark the coordinator: decisions per second and decision latency with 100 nodes.

Three processes share the machine: this client, the server under test and (for the
coordinator) a publisher playing 100 node agents. The server under test is, in turn:

1. a bare pyzmq ROUTER echo server (blocking recv_multipart / send_multipart) answering
   every request with a pre-encoded Placement-sized frame: the ceiling for any
   Python ZeroMQ server on this machine;
2. the real `schedctl start coordinator` process, with 100 nodes' NodeState loaded and
   refreshed (each node publishes 10 times a second; the node agent publishes on every
   change, so under load it publishes more often than that).

The same client sends both the same pre-encoded Schedule frames: first pipelined (a
window of requests in flight; throughput, goal coordinator >= 0.5x echo), then one at a
time (round-trip latency at light load). A decision's round trip at light load is what the
scheduler adds to a request's time to first token in centralized mode (one Schedule ->
Placement exchange before the Infer); the goal is <= 1 ms at the median. When the node
agent and the emulator are installed (`daemons.node.testing.running_node`), the script
also measures it end to end: TTFT through the coordinator vs straight to the node, at
light load, alternating.

    python scripts/bench_coordinator.py --quick     # CI: a few seconds
    python scripts/bench_coordinator.py             # full run

On a shared machine the load of other processes drifts within seconds, and one echo run
followed by one coordinator run can catch the two in different weather. So the pair is
measured `--rounds` times (3 by default, 1 with --quick), the echo just before the
coordinator each time: the ratio is the median of the rounds' ratios, and the table shows
the round that gave it (every round's ratio is in the JSON, `throughput_ratios`). Each
server's CPU time per reply (all its threads, from psutil) is measured too: other processes
lower a rate, not the CPU a server spends per reply, so it is the steadier figure for
comparing one coordinator version with another on a busy machine.

With CURVE (the default of every local cluster and deployment; `--no-curve` skips it) the
coordinator is measured a second time in the same run with per-run keys: every node's state
from its own key, the client with a loadgen key, so ZAP, encryption and the per-message
identity check (daemons/bus/authz.py) are all paid. The cost of authentication per decision
is the difference of the two runs (µs per decision at saturation, and the light-load round
trip), and the ratio of their throughputs.

With `--metrics`, the coordinator is also measured with its Prometheus endpoint on
(`--metrics-bind`, scraped every second as Prometheus would) and off, alternating for
`--metrics-rounds` pairs in the same run: the cost of counting is the drop in decisions/s
(median of each), goal <= 5 %.

    python scripts/bench_coordinator.py --quick --no-node --no-curve --metrics

The output ends with exactly one line of JSON holding every figure and goal verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq

from cli.experiment.keys import LOADGEN, OPERATOR, LocalKeys
from daemons.bus import decode, encode, make_socket
from daemons.bus.security import CurveClient
from daemons.coordinator.testing import Client, free_endpoint, node_state, running_coordinator, schedctl
from daemons.core.messages import Error, NodeState, Placement, Schedule
from daemons.core.process import DaemonProcess, free_port

GOAL_RATIO = 0.5
GOAL_OVERHEAD_MS = 1.0
GOAL_METRICS_COST = 0.05  # decisions/s at most 5 % lower with the Prometheus endpoint on
SCRAPE_EVERY_S = 1.0
MAX_RUN_S = 120.0  # any single measurement loop gives up after this long


@dataclass
class Run:
    """One measurement: per-request send and receive times, and the raw replies."""

    sent: list[float] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0  # CPU time (user + system, all threads) the server used meanwhile

    @property
    def cpu_us(self) -> float:
        """The server's CPU microseconds per reply: unlike a rate, not lowered by other processes
        taking the CPU away (a shared machine's noise), only by the server's own work."""
        return self.server_cpu_s / len(self.replies) * 1e6 if self.replies else float("nan")

    @property
    def rate(self) -> float:
        return len(self.replies) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        rtt = np.asarray(self.received) - np.asarray(self.sent[:len(self.received)])
        return float(np.percentile(rtt, q) * 1000) if len(rtt) else float("nan")


# ----- servers under test -----------------------------------------------------------------------
def echo_server(endpoint: str, reply: bytes, stop_after_s: float) -> None:
    """The bare ROUTER: every request gets `reply`. Exits on an empty payload or after stop_after_s."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.ROUTER)
    sock.bind(endpoint)
    deadline = time.monotonic() + stop_after_s
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        for _ in range(1000):
            try:
                identity, payload = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not payload:
                sock.close(0)
                ctx.term()
                return
            sock.send_multipart([identity, reply])
    sock.close(0)
    ctx.term()


def publisher(state_bind: str, states: list[NodeState], hz: float, stop_after_s: float,
              curves: list[CurveClient] | None = None) -> None:
    """100 node agents in one process: every node's state, `hz` times a second, spread evenly.
    With `curves`, each node publishes on its own socket with its own key (as real nodes do)."""
    ctx: zmq.Context[Any] = zmq.Context()
    socks = [make_socket(ctx, zmq.PUB, curve=c) for c in curves] if curves else [make_socket(ctx, zmq.PUB)]
    for one in socks:
        one.connect(state_bind)
    gap = 1.0 / (hz * len(states))
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < stop_after_s:
        k = i % len(states)
        states[k] = replace(states[k], seq=states[k].seq + 1)
        socks[k % len(socks)].send(encode(states[k], states[k].node))
        i += 1
        time.sleep(max(0.0, start + i * gap - time.monotonic()))
    for one in socks:
        one.close(0)
    ctx.term()


def cluster_states(nodes: int, models: int, seed: int) -> list[NodeState]:
    """Every node lists every model in its catalog and has two of them loaded."""
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(models)]
    return [node_state(f"node-{i:03d}", ready=rng.sample(names, 2), catalog=names,
                       endpoint=f"tcp://127.0.0.1:{30000 + i}") for i in range(nodes)]


# ----- the client ---------------------------------------------------------------------------------
def requests(n: int, models: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [encode(Schedule(f"req-{i:07d}", f"m{rng.randrange(models)}", rng.randint(50, 2000), 128),
                   "bench", f"req-{i:07d}") for i in range(n)]


def drive(endpoint: str, frames: list[bytes], window: int, curve: CurveClient | None = None,
          server_pid: int | None = None) -> Run:
    """Send every frame with at most `window` in flight; replies come back in order. With
    `server_pid`, the CPU time that process used meanwhile is measured too."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.DEALER, curve=curve)
    sock.connect(endpoint)
    run = Run()
    clock = time.perf_counter
    try:
        _warm_up(sock)
        server = psutil.Process(server_pid) if server_pid is not None else None
        cpu_before = _cpu_s(server)
        start = clock()
        deadline = start + MAX_RUN_S
        while len(run.replies) < len(frames) and clock() < deadline:
            while len(run.sent) < len(frames) and len(run.sent) - len(run.replies) < window:
                run.sent.append(clock())
                sock.send(frames[len(run.sent) - 1])
            if sock.poll(1000):
                run.replies.append(sock.recv())
                run.received.append(clock())
        run.elapsed_s = clock() - start
        run.server_cpu_s = _cpu_s(server) - cpu_before
    finally:
        sock.close(0)
        ctx.term()
    return run


def _cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return float(times.user + times.system)


def _warm_up(sock: Any) -> None:
    """One exchange first, so connecting is not measured."""
    sock.send(encode(Schedule("warm-up", "m0", 10, 1), "bench", "warm-up"))
    if not sock.poll(10_000):
        raise RuntimeError("the server did not answer the warm-up request within 10 s")
    sock.recv()


def check_replies(run: Run, frames: list[bytes]) -> dict[str, Any]:
    """Decode after timing: every reply must answer its request, in order."""
    placements = errors = mismatched = 0
    decision_s: list[float] = []
    for frame, reply in zip(frames, run.replies, strict=False):
        env = decode(reply)
        if env.id != decode(frame).id:
            mismatched += 1
        if isinstance(env.body, Placement):
            placements += 1
            decision_s.append(env.body.decision_s)
        elif isinstance(env.body, Error):
            errors += 1
    arr = np.asarray(decision_s) * 1e6 if decision_s else np.asarray([float("nan")])
    return {"placements": placements, "errors": errors, "mismatched": mismatched,
            "policy_us_p50": float(np.percentile(arr, 50)), "policy_us_p99": float(np.percentile(arr, 99))}


# ----- the two measurements -----------------------------------------------------------------------
def measure_echo(frames: list[bytes], lat_frames: list[bytes], window: int, reply: bytes) -> tuple[Run, Run]:
    endpoint = free_endpoint()
    proc = mp.get_context("spawn").Process(target=echo_server, args=(endpoint, reply, MAX_RUN_S * 3))
    proc.start()
    try:
        return drive(endpoint, frames, window, server_pid=proc.pid), drive(endpoint, lat_frames, 1)
    finally:
        _stop_echo(endpoint)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _stop_echo(endpoint: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.DEALER)
    sock.connect(endpoint)
    sock.send(b"")
    time.sleep(0.1)
    sock.close(0)
    ctx.term()


def measure_coordinator(args: argparse.Namespace, frames: list[bytes], lat_frames: list[bytes],
                        metrics: bool = False) -> tuple[Run, Run, dict[str, Any], str]:
    """Throughput and light-load latency; with `metrics`, its /metrics on and scraped every second
    meanwhile (then `checks["metrics_decisions"]` is what it counted)."""
    states = cluster_states(args.nodes, args.models, args.seed)
    bind = f"127.0.0.1:{free_port()}" if metrics else ""
    flags: dict[str, Any] = {"metrics_bind": bind} if metrics else {}
    with tempfile.TemporaryDirectory() as tmp, \
            running_coordinator(Path(tmp), policy=args.policy, seed=args.seed, **flags) as coord, \
            scraping(bind) as last:
        proc = mp.get_context("spawn").Process(target=publisher,
                                               args=(coord.state_bind, states, args.state_hz, MAX_RUN_S * 3))
        proc.start()
        try:
            with Client(coord.bind) as client:
                client.wait_for_nodes({s.node for s in states}, timeout_s=30)
            throughput = drive(coord.bind, frames, args.window, server_pid=coord.proc.pid)
            latency = drive(coord.bind, lat_frames, 1)
        finally:
            proc.terminate()
            proc.join(10)
        checks = check_replies(throughput, frames)
        if metrics:
            checks["metrics_decisions"] = decisions_counted(scrape(bind))
            checks["metrics_scrapes"] = last["scrapes"]
        return throughput, latency, checks, coord.bind


@contextlib.contextmanager
def scraping(bind: str) -> Iterator[dict[str, int]]:
    """Scrape http://BIND/metrics every SCRAPE_EVERY_S on a thread while the block runs (as Prometheus
    would, so the cost of rendering the exposition is paid too); nothing when `bind` is empty."""
    done = threading.Event()
    count = {"scrapes": 0}

    def loop() -> None:
        while not done.wait(SCRAPE_EVERY_S):
            with contextlib.suppress(OSError):
                scrape(bind)
                count["scrapes"] += 1

    thread = threading.Thread(target=loop, daemon=True)
    if bind:
        thread.start()
    try:
        yield count
    finally:
        done.set()
        if bind:
            thread.join(10)


def scrape(bind: str) -> str:
    with urllib.request.urlopen(f"http://{bind}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def decisions_counted(text: str) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "schedctl_coordinator_decisions_total"))


def measure_metrics(args: argparse.Namespace, frames: list[bytes], lat_frames: list[bytes]) -> dict[str, Any]:
    """Decisions/s with the Prometheus endpoint off and on, alternating pairs (a shared machine's
    drift hits both alike); medians, and the relative cost."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    counted = placements = 0
    for _ in range(args.metrics_rounds):
        for on in (False, True):
            throughput, _, checks, _ = measure_coordinator(args, frames, lat_frames, metrics=on)
            rates[on].append(throughput.rate)
            if on:
                counted, placements = checks["metrics_decisions"], checks["placements"]
    off, on = float(np.median(rates[False])), float(np.median(rates[True]))
    # each pair ran back to back: the median of the pairs' ratios is the least drift-prone figure
    ratios = [b / a for a, b in zip(rates[False], rates[True], strict=True) if a]
    cost = 1 - float(np.median(ratios)) if ratios else 0.0
    # How much the same configuration varies from run to run: a busy machine's noise, beside which
    # a few per cent of difference means nothing (the in-process cost is then the figure to trust).
    spread = (max(rates[False]) / min(rates[False]) - 1) if min(rates[False]) else 0.0
    return {"metrics_off_decisions_per_s": round(off), "metrics_on_decisions_per_s": round(on),
            "metrics_rounds": args.metrics_rounds, "metrics_off_rates": [round(r) for r in rates[False]],
            "metrics_on_rates": [round(r) for r in rates[True]], "metrics_cost_pct": round(100 * cost, 2),
            "metrics_off_spread_pct": round(100 * spread, 1),
            "goal_metrics_cost_pct": 100 * GOAL_METRICS_COST, "metrics_goal_met": cost <= GOAL_METRICS_COST,
            # the last run with metrics: decisions it counted >= placements its client saw (the
            # latency run's placements come on top)
            "metrics_decisions_counted": counted, "metrics_placements_seen": placements}


@contextlib.contextmanager
def curve_coordinator(tmp: Path, args: argparse.Namespace, keys: LocalKeys) -> Iterator[tuple[str, str]]:
    """`schedctl start coordinator` with its per-run keys (as a local cluster starts it): (bind, state_bind)."""
    bind, state_bind, events = free_endpoint(), free_endpoint(), free_endpoint()
    argv = [schedctl(), "start", "coordinator", "--bind", bind, "--state-bind", state_bind, "--events-bind", events,
            "--policy", args.policy, "--seed", str(args.seed)]
    with DaemonProcess(argv, name="coordinator", log_path=tmp / "coordinator-curve.log",
                       env={**os.environ, **keys.env("coordinator")}) as coordinator:
        with Client(bind, curve=keys.client(OPERATOR)) as client:
            coordinator.wait_ready(client.answers, 30)
        yield bind, state_bind


def measure_curve(args: argparse.Namespace, frames: list[bytes], lat_frames: list[bytes]) -> tuple[Run, Run]:
    """The same measurement as `measure_coordinator`, with CURVE + ZAP + per-message identity checks."""
    states = cluster_states(args.nodes, args.models, args.seed)
    keys = LocalKeys.create({**{s.node: "node" for s in states}, "coordinator": "coordinator"})
    try:
        curves = [keys.client(s.node) for s in states]
        with tempfile.TemporaryDirectory() as tmp, curve_coordinator(Path(tmp), args, keys) as (bind, state_bind):
            proc = mp.get_context("spawn").Process(target=publisher, args=(state_bind, states, args.state_hz,
                                                                            MAX_RUN_S * 3, curves))
            proc.start()
            try:
                with Client(bind, curve=keys.client(OPERATOR)) as client:
                    client.wait_for_nodes({s.node for s in states}, timeout_s=60)
                loadgen = keys.client(LOADGEN)
                return drive(bind, frames, args.window, loadgen), drive(bind, lat_frames, 1, loadgen)
            finally:
                proc.terminate()
                proc.join(10)
    finally:
        keys.remove()


def curve_figures(plain: tuple[Run, Run], curve: tuple[Run, Run]) -> dict[str, Any]:
    (tp, lat), (ctp, clat) = plain, curve
    cost_us = (1 / ctp.rate - 1 / tp.rate) * 1e6 if ctp.rate and tp.rate else 0.0
    return {"curve_decisions_per_s": round(ctp.rate), "curve_throughput_ratio": round(ctp.rate / tp.rate, 3)
            if tp.rate else 0.0, "curve_cost_us_per_decision": _r(cost_us),
            "curve_decision_rtt_p50_ms": _r(clat.latency_ms(50)), "curve_decision_rtt_p99_ms": _r(clat.latency_ms(99)),
            "curve_added_rtt_p50_ms": _r(clat.latency_ms(50) - lat.latency_ms(50)),
            "curve_replies": len(ctp.replies), "curve_requests": len(ctp.sent)}


# ----- where a decision's time goes (in process, same frames) ------------------------------------
def breakdown(args: argparse.Namespace, frames: list[bytes]) -> dict[str, float]:
    """Microseconds per decision of each stage the coordinator runs, outside any socket."""
    from daemons.coordinator.cluster import ClusterBook
    from daemons.policy import Decision, PlacementRequest, get_policy

    states = cluster_states(args.nodes, args.models, args.seed)
    state_frames = [encode(s, s.node) for s in states]
    book = ClusterBook(3.0, 0.1)
    for s in states:
        book.ingest(s, 0.0)
    policy, rng = get_policy(args.policy, "centralized"), random.Random(args.seed)
    sample = frames[:2000]
    bodies = [decode(f).body for f in sample]
    decisions: list[Any] = []
    out = {
        "decode_schedule_us": _per_item(lambda: [decode(f) for f in sample], len(sample)),
        "policy_us": _per_item(lambda: decisions.extend(
            policy(book.view(), PlacementRequest(b.model, b.prompt_tokens, b.max_new_tokens, b.priority,
                                                 frozenset(b.exclude)), rng) for b in bodies), len(sample)),
        "decode_state_us": _per_item(lambda: [decode(f) for f in state_frames], len(state_frames)),
    }
    placed = [(d, b.model) for d, b in zip(decisions, bodies, strict=False) if isinstance(d, Decision)]
    out["bookkeeping_us"] = _per_item(lambda: [book.placed(d, m, 0.0) for d, m in placed], len(placed))
    replies = [Placement(b.request_id, d.node, d.endpoint, d.action, d.est_wait_s, d.reason, 1e-5)
               for (d, _), b in zip(placed, bodies, strict=False)]
    out["encode_placement_us"] = _per_item(lambda: [encode(r, "coordinator", r.request_id) for r in replies],
                                           len(replies))
    out["metrics_us"] = metrics_cost_us(replies)
    return {k: round(v, 2) for k, v in out.items()}


def metrics_cost_us(replies: list[Placement]) -> float:
    """Microseconds per decision that counting it for Prometheus adds (CoordinatorMetrics.placed:
    a counter and a histogram), the coordinator's only per-decision metrics work."""
    from daemons.coordinator.metrics import CoordinatorMetrics, Snapshot

    metrics = CoordinatorMetrics("bench", lambda: Snapshot(0, 0, 0, 0, 0, 0, "standalone", "active"))
    # The least disturbed of five passes (as timeit advises): a sub-microsecond step is easily
    # swamped by one preemption on a busy machine.
    return min(_per_item(lambda: [metrics.placed(r.action, r.decision_s) for r in replies], len(replies))
               for _ in range(5))


def _per_item(fn: Any, n: int) -> float:
    """Microseconds per item of one pass of `fn`, with the collector off: the bench process
    holds every frame and reply of the run, and a full collection over that heap would be
    charged to whichever stage it happened to interrupt."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) / max(1, n) * 1e6
    finally:
        gc.enable()


# ----- TTFT through the coordinator vs straight to the node ---------------------------------------
TTFT_MODEL = "facebook/opt-125m"


def measure_ttft(args: argparse.Namespace) -> dict[str, Any] | None:
    """TTFT via the coordinator minus TTFT straight to a real node agent (emulated GPU),
    alternating one request at a time; None when the node agent cannot be started here."""
    try:
        from daemons.node.testing import running_node
    except ImportError:
        print("note: daemons.node is not installed; TTFT overhead = Schedule round trip", file=sys.stderr)
        return None
    n = args.ttft_requests
    try:
        with tempfile.TemporaryDirectory() as tmp, running_coordinator(Path(tmp), policy=args.policy) as coord, \
                running_node(Path(tmp), models=[TTFT_MODEL], preload=[TTFT_MODEL], checkpoint_tier="gpu",
                             publish_to=[coord.state_bind]) as node:
            return _alternate(coord.bind, node.bind, n)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"note: could not measure TTFT with a node agent ({str(exc)[:200]}); "
              "TTFT overhead = Schedule round trip", file=sys.stderr)
        return None


def _alternate(coordinator: str, node: str, n: int) -> dict[str, Any]:
    from daemons.core.messages import Infer

    with Client(coordinator) as coord, Client(node) as direct:
        _wait_ready(coord)
        via_ms, direct_ms, schedule_ms = [], [], []
        for i in range(2 * n + 4):  # the first pair warms both paths up
            t0 = time.perf_counter()
            client, target = direct, "direct"
            if i % 2:
                placement = coord.schedule(f"ttft-{i}", TTFT_MODEL).body
                if not isinstance(placement, Placement) or placement.endpoint != node:
                    raise RuntimeError(f"unexpected placement {placement}")
                schedule_ms.append((time.perf_counter() - t0) * 1000)
                target = "via"
            client.send(Infer(f"ttft-{i}", TTFT_MODEL, "hello " * 32, 2), f"ttft-{i}")
            ttft = _first_token_ms(client, t0)
            if i >= 4:
                (via_ms if target == "via" else direct_ms).append(ttft)
    via, straight = float(np.median(via_ms)), float(np.median(direct_ms))
    return {"requests": 2 * n, "direct_p50_ms": round(straight, 4), "via_p50_ms": round(via, 4),
            "overhead_p50_ms": round(via - straight, 4),
            "schedule_p50_ms": round(float(np.median(schedule_ms)), 4)}


def _wait_ready(coord: Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = coord.status().nodes
        if any(m["model"] == TTFT_MODEL and m["state"] == "ready" for r in rows for m in r["models"]):
            return
        time.sleep(0.1)
    raise TimeoutError("the node's preloaded model never showed up ready at the coordinator")


def _first_token_ms(client: Client, t0: float) -> float:
    first = 0.0
    for _ in range(100):
        env = client.recv(30)
        if env.type == "first_token":
            first = (time.perf_counter() - t0) * 1000
        elif env.type in ("done", "error"):
            if not first:
                raise RuntimeError(f"request ended without a first token: {env.body}")
            return first
    raise RuntimeError("no done after 100 messages")


# ----- report -------------------------------------------------------------------------------------
def report(args: argparse.Namespace, echo: tuple[Run, Run], coord: tuple[Run, Run],
           checks: dict[str, Any], ttft: dict[str, Any] | None, costs: dict[str, float]) -> dict[str, Any]:
    (echo_tp, echo_lat), (coord_tp, coord_lat) = echo, coord
    ratio = coord_tp.rate / echo_tp.rate if echo_tp.rate else 0.0
    added_p50 = coord_lat.latency_ms(50) - echo_lat.latency_ms(50)
    if ttft is not None:
        overhead_ms, method = ttft["overhead_p50_ms"], "ttft_via_coordinator_minus_direct"
    else:
        overhead_ms, method = coord_lat.latency_ms(50), "schedule_round_trip_light_load"
    figures: dict[str, Any] = {
        "nodes": args.nodes, "models": args.models, "policy": args.policy, "window": args.window,
        "requests": len(coord_tp.sent), "latency_requests": len(coord_lat.sent), "state_hz": args.state_hz,
        "echo_msgs_per_s": round(echo_tp.rate), "coordinator_decisions_per_s": round(coord_tp.rate),
        # CPU per reply of each server process (all its threads) during the pipelined run, and
        # their ratio: what the two servers' own work allows, whatever else runs on the machine
        "echo_cpu_us_per_msg": _r(echo_tp.cpu_us), "coordinator_cpu_us_per_decision": _r(coord_tp.cpu_us),
        "cpu_ratio": round(echo_tp.cpu_us / coord_tp.cpu_us, 3) if coord_tp.cpu_us else 0.0,
        "throughput_ratio": round(ratio, 3), "goal_throughput_ratio": GOAL_RATIO,
        "throughput_goal_met": ratio >= GOAL_RATIO,
        "echo_rtt_p50_ms": _r(echo_lat.latency_ms(50)), "echo_rtt_p99_ms": _r(echo_lat.latency_ms(99)),
        "decision_rtt_p50_ms": _r(coord_lat.latency_ms(50)), "decision_rtt_p99_ms": _r(coord_lat.latency_ms(99)),
        "added_vs_echo_p50_ms": _r(added_p50),
        "loaded_decision_rtt_p50_ms": _r(coord_tp.latency_ms(50)),
        "loaded_decision_rtt_p99_ms": _r(coord_tp.latency_ms(99)),
        "policy_us_p50": _r(checks["policy_us_p50"]), "policy_us_p99": _r(checks["policy_us_p99"]),
        "placements": checks["placements"], "errors": checks["errors"], "mismatched": checks["mismatched"],
        "ttft_overhead_p50_ms": _r(overhead_ms), "ttft_overhead_method": method,
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "goal_ttft_overhead_ms": GOAL_OVERHEAD_MS, "ttft_goal_met": overhead_ms <= GOAL_OVERHEAD_MS,
    }
    if ttft is not None:
        figures.update({f"ttft_{k}": v for k, v in ttft.items()})
    figures.update({f"cost_{k}": v for k, v in costs.items()})
    _print_table(figures)
    return figures


def _r(x: float) -> float:
    return round(float(x), 4)


def _print_table(f: dict[str, Any]) -> None:
    rows = [
        ("", "echo server", "coordinator"),
        (f"throughput (msg/s, window {f['window']})", f"{f['echo_msgs_per_s']:,}",
         f"{f['coordinator_decisions_per_s']:,}"),
        ("server CPU per reply (us, all threads)", f"{f['echo_cpu_us_per_msg']:.1f}",
         f"{f['coordinator_cpu_us_per_decision']:.1f}"),
        ("round trip p50, light load (ms)", f"{f['echo_rtt_p50_ms']:.3f}", f"{f['decision_rtt_p50_ms']:.3f}"),
        ("round trip p99, light load (ms)", f"{f['echo_rtt_p99_ms']:.3f}", f"{f['decision_rtt_p99_ms']:.3f}"),
        ("round trip p50 / p99, saturated (ms)", "", f"{f['loaded_decision_rtt_p50_ms']:.3f} / "
                                                     f"{f['loaded_decision_rtt_p99_ms']:.3f}"),
        ("policy time p50 / p99 (us)", "", f"{f['policy_us_p50']:.1f} / {f['policy_us_p99']:.1f}"),
    ]
    print(f"coordinator benchmark: {f['nodes']} nodes, {f['models']} models, policy {f['policy']}, "
          f"{f['requests']} pipelined + {f['latency_requests']} one-at-a-time requests, "
          f"node state {f['state_hz']:g} Hz per node; {f['cpus']} CPUs, load average {f['load_average_1m']:.2f} "
          "(other processes skew every figure)")
    for name, a, b in rows:
        print(f"  {name:<40} {a:>14} {b:>16}")
    print(f"  replies: {f['placements']} placements, {f['errors']} errors, {f['mismatched']} out of order")
    bus = f["cost_decode_schedule_us"] + f["cost_encode_placement_us"]
    ours = f["cost_policy_us"] + f["cost_bookkeeping_us"]
    print(f"  per decision, in process (us): bus decode {f['cost_decode_schedule_us']:.1f} + policy "
          f"{f['cost_policy_us']:.1f} + bookkeeping {f['cost_bookkeeping_us']:.1f} + bus encode "
          f"{f['cost_encode_placement_us']:.1f} = {bus + ours:.1f} (codec {bus / (bus + ours):.0%}); "
          f"one NodeState decode {f['cost_decode_state_us']:.0f}")
    if "ttft_via_p50_ms" in f:
        print(f"  TTFT p50 with a real node agent (ms): straight {f['ttft_direct_p50_ms']:.3f}, through the "
              f"coordinator {f['ttft_via_p50_ms']:.3f} (schedule step {f['ttft_schedule_p50_ms']:.3f})")
    verdict = "met" if f["throughput_goal_met"] else "MISSED"
    print(f"throughput ratio {f['throughput_ratio']:.2f} (goal >= {GOAL_RATIO}): {verdict}")
    how = ("TTFT through the coordinator minus TTFT straight to the node"
           if f["ttft_overhead_method"].startswith("ttft") else
           "the Schedule -> Placement round trip at light load (no node agent measured)")
    verdict = "met" if f["ttft_goal_met"] else "MISSED"
    print(f"scheduler overhead on TTFT, p50 {f['ttft_overhead_p50_ms']:.3f} ms (goal <= {GOAL_OVERHEAD_MS} ms), "
          f"measured as {how}: {verdict}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--policy", default="affinity-score")
    p.add_argument("--requests", type=int, default=0, help="pipelined requests (default 100k, 5k quick)")
    p.add_argument("--latency-requests", type=int, default=0, help="one-at-a-time requests (5k, 500 quick)")
    p.add_argument("--window", type=int, default=64, help="requests in flight in the throughput run")
    p.add_argument("--state-hz", type=float, default=10.0, help="state publications per node per second")
    p.add_argument("--ttft-requests", type=int, default=0, help="TTFT pairs with a node (300, 30 quick)")
    p.add_argument("--no-node", action="store_true", help="skip the TTFT measurement with a node agent")
    p.add_argument("--no-curve", action="store_true", help="skip the second coordinator run with CURVE")
    p.add_argument("--metrics", action="store_true", help="also measure decisions/s with the Prometheus "
                   "endpoint on vs off")
    p.add_argument("--metrics-rounds", type=int, default=3, help="on/off pairs with --metrics (medians)")
    p.add_argument("--rounds", type=int, default=0, help="echo + coordinator pairs; the median ratio counts "
                   "(3, 1 quick)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.requests = args.requests or (5_000 if args.quick else 100_000)
    args.latency_requests = args.latency_requests or (500 if args.quick else 5_000)
    args.ttft_requests = args.ttft_requests or (20 if args.quick else 300)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    frames = requests(args.requests, args.models, args.seed)
    lat_frames = requests(args.latency_requests, args.models, args.seed + 1)
    sample = Placement("req-0000000", "node-000", "tcp://127.0.0.1:30000", "SERVE", 0.5,
                       "affinity score 970 (model ready, queue 1, gpu util 20%)", 2.5e-05)
    reply = encode(sample, "coordinator", "req-0000000")
    rounds = []
    for _ in range(args.rounds):  # each round: the echo, then the coordinator right after it
        echo = measure_echo(frames, lat_frames, args.window, reply)
        rounds.append((echo, measure_coordinator(args, frames, lat_frames)))
    ratios = [c[0].rate / e[0].rate if e[0].rate else 0.0 for e, c in rounds]
    echo, (coord_tp, coord_lat, checks, _) = rounds[sorted(range(len(rounds)), key=ratios.__getitem__)[
        (len(rounds) - 1) // 2]]  # the median round (the lower one of an even count)
    ttft = None if args.no_node else measure_ttft(args)
    figures = report(args, echo, (coord_tp, coord_lat), checks, ttft, breakdown(args, frames))
    figures.update({"rounds": len(rounds), "throughput_ratios": [round(r, 3) for r in ratios]})
    if len(rounds) > 1:
        print(f"  ratio per round (echo just before the coordinator): {', '.join(f'{r:.3f}' for r in ratios)}; "
              "the table shows the median round")
    if not args.no_curve:
        extra = curve_figures((coord_tp, coord_lat), measure_curve(args, frames, lat_frames))
        figures.update(extra)
        print(f"CURVE on (same run): {extra['curve_decisions_per_s']:,} decisions/s, ratio to CURVE off "
              f"{extra['curve_throughput_ratio']:.3f}; authentication costs {extra['curve_cost_us_per_decision']:.1f} "
              f"us per decision at saturation, {extra['curve_added_rtt_p50_ms'] * 1000:.0f} us on the light-load "
              f"round trip p50 ({extra['curve_decision_rtt_p50_ms']:.3f} ms); replies {extra['curve_replies']}/"
              f"{extra['curve_requests']}")
    if args.metrics:
        extra = measure_metrics(args, frames, lat_frames)
        figures.update(extra)
        verdict = "met" if extra["metrics_goal_met"] else "MISSED"
        in_process = figures["cost_metrics_us"]
        total = sum(figures[f"cost_{k}_us"] for k in ("decode_schedule", "policy", "bookkeeping", "encode_placement"))
        figures["metrics_in_process_cost_pct"] = round(100 * in_process / (total + in_process), 2)
        print(f"metrics on vs off (same run, {extra['metrics_rounds']} alternating pairs): medians "
              f"{extra['metrics_on_decisions_per_s']:,} vs {extra['metrics_off_decisions_per_s']:,} decisions/s, "
              f"cost {extra['metrics_cost_pct']:.1f} % (1 - the median pair's on/off ratio; goal <= "
              f"{extra['goal_metrics_cost_pct']:.0f} %): "
              f"{verdict}; in process, counting a decision costs {in_process:.2f} us, "
              f"{figures['metrics_in_process_cost_pct']:.1f} % of a decision's {total + in_process:.1f} us; "
              f"{extra['metrics_decisions_counted']:,} decisions counted for "
              f"{extra['metrics_placements_seen']:,} pipelined placements")
        if extra["metrics_off_spread_pct"] > 100 * GOAL_METRICS_COST:
            print(f"  (runs with metrics off alone vary by {extra['metrics_off_spread_pct']:.0f} %: this machine is "
                  "too busy for the on/off figure; the in-process cost is the one to trust)")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
