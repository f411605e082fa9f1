#!/usr/bin/env python3
"""Profile the coordinator's decision path in process: real code, no sockets, no other process.

A `Coordinator` (daemons/coordinator/server.py) is built but never bound; pre-encoded
Schedule frames go through its request handler (`_on_request_frames`: envelope decode,
authorisation, policy, bookkeeping, reply encode) and pre-encoded NodeState frames through
its state handler (`_on_state`), interleaved as in `scripts/bench_coordinator.py` (100
nodes publishing 10 times a second against a coordinator deciding `--rate` times a second).
Replies go to a sink that keeps them, so nothing is sent and the figures are the Python work
alone: what the serving loop adds on top (ZeroMQ recv/send, polling) is the difference to
the benchmark's decisions per second.

    python scripts/profile_coordinator.py            # µs per decision, per stage
    python scripts/profile_coordinator.py --cprofile # and the 25 costliest functions
    python scripts/profile_coordinator.py --serving  # and the real serving loop, step by step

With `--serving`, the same coordinator also runs its real loop (`serve_forever`) on loopback
in a child process, driven as `scripts/bench_coordinator.py` drives it (a window of 64
requests in flight, 100 nodes publishing at `--state-hz` from a third process), and its main
thread's time is split by step: receiving a request (`recv_routed`), handling it (the
handler above), sending the round's answers (`_flush`), reading and taking in node states,
and the rest of the loop; plus the CPU of the whole process (all threads: the rest is
ZeroMQ's I/O thread). That is where a decision's CPU goes beyond the handler. Each timed
step adds two clock reads (~0.1 µs), counted in its own figure.

The output ends with one line of JSON: µs per decision of the whole handler and of each stage,
µs per NodeState received, and the decisions per second that the handler alone would allow.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import multiprocessing as mp
import os
import pstats
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import psutil
import zmq

# The benchmark's own cluster and requests: the profile measures what it measures.
from bench_coordinator import MAX_RUN_S, cluster_states, drive, publisher
from bench_coordinator import requests as schedule_frames

from daemons.bus import decode, encode
from daemons.coordinator.config import CoordinatorConfig
from daemons.coordinator.server import GC_THRESHOLD, Coordinator, _request
from daemons.core.messages import NodeState, Placement
from daemons.core.process import free_endpoint
from daemons.policy import Decision

MORE = int(zmq.SNDMORE)


class Sink:
    """Stands in for the ROUTER: keeps every reply's last frame (the envelope)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:
        if not flags & MORE:
            self.frames.append(frame)

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:  # as the coordinator sent before
        self.frames.append(frames[-1])

    def close(self, linger: int = 0) -> None:
        pass


def state_stream(states: list[NodeState], n: int) -> list[bytes]:
    """`n` state frames, node after node, each a newer seq of its node (as the publisher sends)."""
    out = []
    current = list(states)
    for i in range(n):
        k = i % len(current)
        current[k] = replace(current[k], seq=current[k].seq + 1)
        out.append(encode(current[k], current[k].node))
    return out


def make_coordinator(policy: str, seed: int, states: list[NodeState]) -> tuple[Coordinator, Sink]:
    coord = Coordinator(CoordinatorConfig(policy=policy, seed=seed, dead_after_s=1e6))
    coord.router.close(0)
    sink = Sink()
    coord.router = sink
    for s in states:
        coord._on_state(encode(s, s.node))
    return coord, sink


@contextlib.contextmanager
def fresh(args: argparse.Namespace, states: list[NodeState]) -> Iterator[tuple[Coordinator, Sink]]:
    coord, sink = make_coordinator(args.policy, args.seed, states)
    try:
        yield coord, sink
    finally:
        coord.close()


def timed(fn: Callable[[], Any], n: int) -> float:
    """µs per item of one pass of `fn`, the collector off (see bench_coordinator._per_item)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) / max(1, n) * 1e6
    finally:
        gc.enable()


def run_loop(coord: Coordinator, frames: list[bytes], states: list[bytes], every: int) -> None:
    """The handler as the serving loop calls it: one state frame per `every` requests."""
    on_request, on_state, flush = coord._on_request_frames, coord._on_state, getattr(coord, "_flush", None)
    identity = b"\x00k\x8bEg"
    s = 0
    for i, frame in enumerate(frames):
        if i % every == 0 and s < len(states):
            on_state(states[s])
            s += 1
        on_request([identity, frame])
        if flush is not None and i % 32 == 31:  # a round's answers leave together (REQUEST_BATCH)
            flush()
    if flush is not None:
        flush()


CHUNK = 1000  # decisions per chunk in least_chunk


def least_chunk(coord: Coordinator, frames: list[bytes], states: list[bytes], every: int) -> float:
    """µs per decision of the least costly chunk of CHUNK decisions, in this thread's CPU time,
    the collector off: on a busy machine, other processes' work lengthens some chunks (cache
    and CPU taken away) but shortens none, so the least one is the figure to compare two
    versions by (timeit's advice), where the whole run's average moves by 10-30 %."""
    gc.collect()
    gc.disable()
    try:
        least = float("inf")
        for i in range(0, len(frames) - CHUNK + 1, CHUNK):
            started = time.thread_time()
            run_loop(coord, frames[i:i + CHUNK], states[i // every:(i + CHUNK) // every], every)
            least = min(least, time.thread_time() - started)
        return least / CHUNK * 1e6
    finally:
        gc.enable()


def stages(coord: Coordinator, frames: list[bytes], state_frames: list[bytes]) -> dict[str, float]:
    """µs per item of each stage, on a fresh copy of the same coordinator's state."""
    bodies = [decode(f).body for f in frames]
    policy, rng = coord.policy, coord.rng
    book = coord.book
    decisions: list[Any] = []
    out = {
        "decode_schedule_us": timed(lambda: [decode(f) for f in frames], len(frames)),
        "policy_us": timed(lambda: decisions.extend(policy(book.view(), _request(b), rng) for b in bodies),
                           len(bodies)),
    }
    placed = [(d, b.model) for d, b in zip(decisions, bodies, strict=True) if isinstance(d, Decision)]
    now = time.monotonic()
    out["bookkeeping_us"] = timed(lambda: [book.placed(d, m, now) for d, m in placed], len(placed))
    replies = [Placement(b.request_id, d.node, d.endpoint, d.action, d.est_wait_s, d.reason, 1e-5)
               for (d, _), b in zip(placed, bodies, strict=False)]
    out["encode_placement_us"] = timed(lambda: [encode(r, "coordinator", r.request_id) for r in replies],
                                       len(replies))
    out["decode_state_us"] = timed(lambda: [decode(f) for f in state_frames], len(state_frames))
    envs = [decode(f).body for f in state_frames]
    out["ingest_state_us"] = timed(lambda: [book.ingest(s, time.monotonic()) for s in envs], len(envs))
    return out


# ----- the real serving loop, step by step (--serving) -------------------------------------------
STEPS = {  # figure -> the Coordinator method whose time it is
    "recv_request": "_recv_request", "handle_request": "_on_request_frames", "send_answers": "_flush",
    "recv_state": "_recv_state", "collect_state": "_collect_state", "take_in_state": "_on_state",
}


def serve_timed(policy: str, seed: int, ends: tuple[str, str, str], conn: Connection) -> None:
    """Child process: a real Coordinator on loopback whose steps add up their wall time. SIGUSR1
    starts a measurement, SIGTERM ends it (and the loop); the figures go back through `conn`."""
    coord = Coordinator(CoordinatorConfig(bind=ends[0], state_bind=ends[1], events_bind=ends[2], policy=policy,
                                          seed=seed))
    coord.bind()
    spent = dict.fromkeys([*STEPS, "poll"], 0)
    counts = {"wakeups": 0, "requests": 0, "states": 0}
    clock = time.perf_counter_ns
    for figure, name in STEPS.items():
        setattr(coord, name, _timed(getattr(coord, name), spent, figure, clock))
    poll, recv, on_state = coord.poller.poll, coord._recv_request, coord._on_state

    def counting_poll(timeout: int) -> Any:
        counts["wakeups"] += 1
        started = clock()
        try:
            return poll(timeout)  # waiting for work: the loop's idle time
        finally:
            spent["poll"] += clock() - started

    def counting_recv() -> Any:
        frames = recv()  # zmq.Again when none waits: not counted
        counts["requests"] += 1
        return frames

    def counting_state(frame: bytes) -> None:
        counts["states"] += 1
        on_state(frame)

    coord.poller.poll, coord._recv_request, coord._on_state = counting_poll, counting_recv, counting_state  # type: ignore[method-assign]
    start = {"thread": 0, "wall": 0}

    def begin(*_: Any) -> None:
        for key in spent:
            spent[key] = 0
        for key in counts:
            counts[key] = 0
        start.update(thread=time.thread_time_ns(), wall=clock())

    signal.signal(signal.SIGUSR1, begin)
    signal.signal(signal.SIGTERM, lambda *_: coord.stop())
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)  # as run() sets them
    conn.send(coord.endpoints)
    try:
        coord.serve_forever()
    finally:
        conn.send({"spent_ns": spent, "counts": counts, "thread_ns": time.thread_time_ns() - start["thread"],
                   "wall_ns": clock() - start["wall"]})
        coord.close()


def _timed(step: Callable[..., Any], spent: dict[str, int], figure: str,
           clock: Callable[[], int]) -> Callable[..., Any]:
    def timed_step(*args: Any) -> Any:
        started = clock()
        try:
            return step(*args)
        finally:
            spent[figure] += clock() - started
    return timed_step


def serving(args: argparse.Namespace, states: list[NodeState]) -> dict[str, Any]:
    """The serving loop's steps in µs per decision, and the process's CPU per decision."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    ends = (free_endpoint(), free_endpoint(), free_endpoint())
    server = ctx.Process(target=serve_timed, args=(args.policy, args.seed, ends, there))
    server.start()
    feeder = None
    try:
        if not here.poll(30):
            raise SystemExit("the coordinator did not start within 30 s")
        bound = here.recv()
        feeder = ctx.Process(target=publisher, args=(bound["state_bind"], list(states), args.state_hz, MAX_RUN_S))
        feeder.start()
        _wait_for_nodes(bound["bind"], len(states))
        frames = schedule_frames(args.serving_requests, args.models, args.seed + 2)
        process = psutil.Process(server.pid)
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(0.05)
        cpu = process.cpu_times()
        run = drive(bound["bind"], frames, args.window)
        after = process.cpu_times()
        os.kill(server.pid, signal.SIGTERM)
        if not here.poll(30):
            raise SystemExit("the coordinator did not report its figures within 30 s")
        got = here.recv()
    finally:
        for proc in (feeder, server):
            if proc is not None:
                proc.terminate()
                proc.join(10)
    n = max(1, got["counts"]["requests"])
    steps = {f"{k}_us": round(v / 1000 / n, 2) for k, v in got["spent_ns"].items()}
    main_us = got["thread_ns"] / 1000 / n
    process_us = (after.user + after.system - cpu.user - cpu.system) * 1e6 / n
    return {"serving_decisions_per_s": round(run.rate), "serving_requests": n, **steps,
            "serving_wall_us": round(got["wall_ns"] / 1000 / n, 2),
            "serving_other_us": round((got["wall_ns"] - sum(got["spent_ns"].values())) / 1000 / n, 2),
            "serving_main_thread_cpu_us": round(main_us, 2), "serving_process_cpu_us": round(process_us, 2),
            "serving_main_thread_busy": round(got["thread_ns"] / max(1, got["wall_ns"]), 3),
            "serving_states": got["counts"]["states"], "serving_wakeups": got["counts"]["wakeups"]}


def _wait_for_nodes(bind: str, count: int) -> None:
    from daemons.coordinator.testing import Client

    with Client(bind) as client:
        client.wait_for_nodes({f"node-{i:03d}" for i in range(count)}, timeout_s=30)


def _print_serving(f: dict[str, Any]) -> None:
    states = f["recv_state_us"] + f["collect_state_us"] + f["take_in_state_us"]
    print(f"serving loop: {f['serving_requests']:,} decisions at {f['serving_decisions_per_s']:,}/s (window 64), "
          f"{f['serving_states']} node states, {f['serving_wakeups']} wake-ups")
    print(f"  wall us per decision {f['serving_wall_us']:.1f} = receive {f['recv_request_us']:.1f} + handle "
          f"{f['handle_request_us']:.1f} + send {f['send_answers_us']:.1f} + states {states:.1f} + waiting in poll "
          f"{f['poll_us']:.1f} + rest of the loop {f['serving_other_us']:.1f} (a step's wall time includes the "
          "time its thread waited for a CPU)")
    print(f"  CPU us per decision: main thread {f['serving_main_thread_cpu_us']:.1f} (on a CPU "
          f"{f['serving_main_thread_busy']:.0%} of the run), whole process {f['serving_process_cpu_us']:.1f} "
          "(the rest: ZeroMQ's I/O thread)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--policy", default="affinity-score")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--state-hz", type=float, default=10.0, help="state publications per node per second")
    p.add_argument("--rate", type=float, default=50_000.0,
                   help="decisions per second assumed when interleaving states (the 0.5x echo goal)")
    p.add_argument("--cprofile", action="store_true", help="also print the 25 costliest functions")
    p.add_argument("--serving", action="store_true", help="also time the real serving loop's steps on loopback")
    p.add_argument("--serving-requests", type=int, default=20_000, help="pipelined requests with --serving")
    p.add_argument("--window", type=int, default=64, help="requests in flight with --serving")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    states = cluster_states(args.nodes, args.models, args.seed)
    every = max(1, round(args.rate / (args.state_hz * args.nodes)))
    frames = schedule_frames(args.requests, args.models, args.seed)
    state_frames = state_stream(states, args.requests // every + 1)
    # Each measurement on a fresh coordinator holding the same 100 states, fed the same frames.
    with fresh(args, states) as (coord, sink):
        loop_us = timed(lambda: run_loop(coord, frames, state_frames, every), len(frames))
        if len(sink.frames) != len(frames):
            raise SystemExit(f"{len(sink.frames)} replies for {len(frames)} requests")
        actions = Counter(getattr(decode(f).body, "action", "error") for f in sink.frames)
    with fresh(args, states) as (coord, _):
        least_us = least_chunk(coord, frames, state_frames, every)
    with fresh(args, states) as (coord, _):
        parts = stages(coord, frames[:5000], state_frames[:1000])
    if args.cprofile:
        with fresh(args, states) as (coord, _):
            profiler = cProfile.Profile()
            profiler.runcall(run_loop, coord, frames, state_frames, every)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    figures = {"nodes": args.nodes, "models": args.models, "policy": args.policy, "requests": len(frames),
               "state_every_requests": every, "handler_us_per_decision": round(loop_us, 2),
               "handler_us_least_chunk": round(least_us, 2),
               "handler_decisions_per_s": round(1e6 / loop_us), "actions": dict(actions),
               **{k: round(v, 2) for k, v in parts.items()}}
    state_share = (parts["decode_state_us"] + parts["ingest_state_us"]) / every
    print(f"coordinator in process: {loop_us:.1f} us per decision through the request handler "
          f"({1e6 / loop_us:,.0f} decisions/s; least {CHUNK}-decision chunk {least_us:.1f} us of CPU), "
          f"one NodeState per {every} decisions; stages (us): decode "
          f"{parts['decode_schedule_us']:.1f}, policy {parts['policy_us']:.1f}, bookkeeping "
          f"{parts['bookkeeping_us']:.1f}, encode {parts['encode_placement_us']:.1f}; per NodeState decode "
          f"{parts['decode_state_us']:.1f} + ingest {parts['ingest_state_us']:.1f} ({state_share:.1f} per decision)")
    if args.serving:
        extra = serving(args, states)
        figures.update(extra)
        _print_serving(extra)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
