#!/usr/bin/env python3
"""Benchmark a node agent's own time per message on the request path: real processes on loopback.

What the simulator charges a node agent for the messages of a request (daemons/sim/agent.py
`AgentCosts`) comes from here. Two real gossip-mode node agents (`schedctl start node`,
emulated GPU, the emulator as backend) run on loopback: node-1 holds facebook/opt-125m,
node-0 holds nothing, so every request that enters at node-0 is forwarded to node-1 and
its answers relayed back. The same client sends, one request at a time (no queueing), prompts
of the default workload's median length (1,020 tokens, built as the load generator builds them):

- **direct**: an Infer with action SERVE straight to node-1 (its agent serves it);
- **forwarded**: an Infer with no action to node-0 (its agent places it, forwards it to
  node-1 and relays node-1's FirstToken and Done back), alternating with direct;
- **long**: direct requests generating `--long-tokens` tokens (node-1's agent reads each
  token of the backend's stream);
- **streamed**: forwarded requests with `stream` on and `--long-tokens` tokens, so node-0's
  agent relays one StreamToken frame per token;
- **cold**: last, node-0 cold-starts each default model once (its instance launched, loaded
  from the GPU tier, polled on /health): the wait beyond the load time the catalog models
  (Done `load_wait_s` less `Catalog.load_s`) is the instance's process start-up.

Each agent's CPU time (user + system, all threads, from psutil; its backend instances are
other processes) is read around each phase, less what it spends idle (gossip, state
publication) over the same time, measured before. Hence, per request:

- `serve_us`: node-1's CPU per request served (Infer in, backend request, FirstToken, Done),
  from the direct + forwarded phase (it served both), with 2 tokens;
- `token_us`: node-1's CPU per generated token it reads from the backend, (long − short) / tokens;
- `relay_us`: node-0's CPU per frame it relays, (streamed − forwarded) / extra frames;
- `place_us`: node-0's CPU to take, place and forward one Infer: forwarded − 2 relays
  (its FirstToken and its Done).

Baseline, in the same run: a bare ROUTER in its own process that decodes each frame and
answers with an encoded FirstToken (the project's codec, no agent): its round trip is the
loopback transport the simulator's wire latency stands for, and its CPU per message the
least any Python hop costs. The table shows each agent figure as a multiple of it, and the
TTFT a forward adds (forwarded − direct, p50) against the echo's round trip.

    python scripts/bench_agent.py --quick     # CI: a few seconds of requests
    python scripts/bench_agent.py             # full run (about half a minute)

CPU times, unlike latencies, are not inflated by other processes taking the cores (a shared
machine's noise). The output ends with exactly one line of JSON holding every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemons.bus import make_socket  # noqa: E402
from daemons.bus.client import Client  # noqa: E402
from daemons.bus.envelope import encode  # noqa: E402
from daemons.bus.sockets import parse_frame  # noqa: E402
from daemons.core.messages import Done, FirstToken, Infer  # noqa: E402
from daemons.core.process import free_endpoint  # noqa: E402
from daemons.loadgen.frames import make_prompt  # noqa: E402
from daemons.node.catalog import Catalog  # noqa: E402
from daemons.node.config import DEFAULT_MODELS  # noqa: E402
from daemons.node.testing import NodeProcess, running_node  # noqa: E402

MODEL = "facebook/opt-125m"
PROMPT_TOKENS = 1020  # the default workload's median prompt (daemons/loadgen/workload.py), built as the loadgen does
SHORT_TOKENS = 2
MAX_WAIT_S = 60.0  # any one request, any one wait for the cluster
INIT_S = 0.2  # the instances' modelled start-up (`init_s`); from the GPU tier a load is about this long
COLD_MODELS = DEFAULT_MODELS  # node-0 cold-starts each once at the end (all fit one 80 GB GPU together)


@dataclass
class Phase:
    """One phase's client-side times and the agents' CPU seconds over it (idle part removed)."""

    ttft_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    first_ms: float = 0.0  # the path's first request in the agents' lives (cold code paths, first links)


# ----- the baseline: a bare ROUTER that decodes and answers ------------------------------------
def echo_server(endpoint: str, stop_after_s: float) -> None:
    """Decode every frame and answer with an encoded FirstToken; an empty frame stops it."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.ROUTER)
    sock.bind(endpoint)
    deadline = time.monotonic() + stop_after_s
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        identity, frame = sock.recv_multipart()
        if not frame:
            break
        env = parse_frame(frame, identity)
        if env is not None:
            sock.send_multipart([identity, encode(FirstToken(env.id, "echo"), "echo", env.id)])
    sock.close(0)
    ctx.term()


def measure_echo(n: int) -> tuple[list[float], float]:
    """Round trips (ms) of `n` Infer frames, one at a time, and the echo's CPU µs per message."""
    endpoint = free_endpoint()
    proc = mp.get_context("fork").Process(target=echo_server, args=(endpoint, MAX_WAIT_S * 2), daemon=True)
    proc.start()
    rtts: list[float] = []
    try:
        ps = psutil.Process(proc.pid)
        with Client(endpoint) as client:
            client.send(Infer("warm", MODEL, make_prompt("warm", PROMPT_TOKENS), SHORT_TOKENS), "warm")
            client.recv(MAX_WAIT_S)
            before = _cpu(ps)
            for i in range(n):
                t0 = time.perf_counter()
                client.send(Infer(f"echo-{i}", MODEL, make_prompt(f"echo-{i}", PROMPT_TOKENS), SHORT_TOKENS),
                            f"echo-{i}")
                client.recv(MAX_WAIT_S)
                rtts.append((time.perf_counter() - t0) * 1000)
            cpu = _cpu(ps) - before
            client.send_raw([b""])
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return rtts, cpu / n * 1e6


# ----- the agents -------------------------------------------------------------------------------
def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@contextlib.contextmanager
def two_peers(tmp: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """node-0 (entry, holds nothing) and node-1 (holds MODEL), gossip peers on loopback."""
    gossip = [free_endpoint(), free_endpoint()]
    common: dict[str, Any] = {"scheduler": "gossip", "checkpoint_tier": "gpu", "init_s": INIT_S}
    with running_node(tmp, "node-1", gossip_bind=gossip[1], models=[MODEL], preload=[MODEL], **common) as holder, \
            running_node(tmp, "node-0", gossip_bind=gossip[0], seeds=[gossip[1]], models=list(COLD_MODELS),
                         **common) as entry:
        _wait_for_holder(entry)
        yield entry, holder


def _wait_for_holder(entry: NodeProcess) -> None:
    """Until node-0's gossip view shows node-1 with the model ready."""
    deadline = time.monotonic() + MAX_WAIT_S
    with Client(entry.bind) as client:
        while time.monotonic() < deadline:
            for row in client.status().nodes:
                if row["node"] == "node-1" and any(m["model"] == MODEL and m["state"] == "ready"
                                                   for m in row.get("models", [])):
                    return
            time.sleep(0.1)
    raise TimeoutError("node-0 never learned that node-1 holds the model")


def request(client: Client, rid: str, tokens: int, action: str = "", stream: bool = False) -> tuple[float, Done]:
    """One request, waited for: (TTFT ms, its Done)."""
    t0 = time.perf_counter()
    client.send(Infer(rid, MODEL, make_prompt(rid, PROMPT_TOKENS), tokens, action=action, stream=stream), rid)
    first = 0.0
    deadline = time.monotonic() + MAX_WAIT_S
    while time.monotonic() < deadline:
        env = client.recv(MAX_WAIT_S)
        if env.type == "first_token" and not first:
            first = (time.perf_counter() - t0) * 1000
        elif isinstance(env.body, Done):
            if not first:
                raise RuntimeError(f"{rid} ended without a first token")
            return first, env.body
        elif env.type == "error":
            raise RuntimeError(f"{rid} failed: {env.body}")
    raise TimeoutError(f"{rid}: no Done within {MAX_WAIT_S:g} s")


class Agents:
    """CPU meters of the two agent processes, less their idle rate."""

    def __init__(self, entry: NodeProcess, holder: NodeProcess, idle_s: float) -> None:
        self.procs = {"node-0": psutil.Process(entry.proc.pid), "node-1": psutil.Process(holder.proc.pid)}
        backends = holder.children()
        if len(backends) == 1:  # node-1's emulator instance: the backend's own share, for the table
            self.procs["backend"] = backends[0]
        start = {k: _cpu(p) for k, p in self.procs.items()}
        time.sleep(idle_s)
        self.idle_rate = {k: (_cpu(p) - start[k]) / idle_s for k, p in self.procs.items()}

    @contextlib.contextmanager
    def metered(self, phase: Phase) -> Iterator[None]:
        t0, before = time.monotonic(), {k: _cpu(p) for k, p in self.procs.items()}
        yield
        dt = time.monotonic() - t0
        phase.cpu_s = {k: max(_cpu(p) - before[k] - self.idle_rate[k] * dt, 0.0) for k, p in self.procs.items()}


def run_phases(entry: NodeProcess, holder: NodeProcess, n: int, n_long: int, long_tokens: int,
               idle_s: float) -> tuple[dict[str, Phase], float]:
    """The four phases, and an idle agent's CPU fraction (the mean of the two)."""
    phases = {name: Phase() for name in ("direct", "forwarded", "long", "streamed")}
    with Client(entry.bind) as via, Client(holder.bind) as direct:
        for i in range(3):  # warm both paths (first links, first backend request); the first of each is kept
            ttft_d, _ = request(direct, f"warm-d{i}", SHORT_TOKENS, "SERVE")
            ttft_f, _ = request(via, f"warm-f{i}", SHORT_TOKENS)
            if i == 0:
                phases["direct"].first_ms, phases["forwarded"].first_ms = ttft_d, ttft_f
        agents = Agents(entry, holder, idle_s)
        both = Phase()
        with agents.metered(both):
            for i in range(n):
                _timed(phases["direct"], request(direct, f"d{i}", SHORT_TOKENS, "SERVE"))
                ttft, done = request(via, f"f{i}", SHORT_TOKENS)
                if done.node != "node-1" or done.hops != 1:
                    raise RuntimeError(f"f{i} was not forwarded to node-1: {done}")
                phases["forwarded"].ttft_ms.append(ttft)
                phases["forwarded"].requests += 1
        phases["direct"].cpu_s = phases["forwarded"].cpu_s = both.cpu_s
        with agents.metered(phases["long"]):
            for i in range(n_long):
                _timed(phases["long"], request(direct, f"l{i}", long_tokens, "SERVE"))
        with agents.metered(phases["streamed"]):
            for i in range(n_long):
                _timed(phases["streamed"], request(via, f"s{i}", long_tokens, stream=True))
        phases["cold"] = cold_starts(via)
    return phases, (agents.idle_rate["node-0"] + agents.idle_rate["node-1"]) / 2


def cold_starts(entry: Client) -> Phase:
    """Each of node-0's models loaded by a COLD_START there: the wait for its instance (Done
    `load_wait_s`: launch, the modelled load, /health) beyond the load the catalog models."""
    catalog = Catalog(COLD_MODELS, "a100-80gb", "gpu", 16_384, INIT_S)  # the node's defaults, as configured above
    phase = Phase()
    for i, model in enumerate(COLD_MODELS):
        rid = f"cold-{i}"
        entry.send(Infer(rid, model, make_prompt(rid, 16), SHORT_TOKENS, action="COLD_START"), rid)
        done = [e.body for e in entry.until({"done", "error"}, timeout_s=MAX_WAIT_S)][-1]
        if not isinstance(done, Done) or done.action != "COLD_START":
            raise RuntimeError(f"{rid} was not a cold start on node-0: {done}")
        phase.ttft_ms.append((done.timings["load_wait_s"] - catalog.load_s(model)) * 1000)
        phase.requests += 1
    return phase


def _timed(phase: Phase, answered: tuple[float, Done]) -> None:
    ttft, _ = answered
    phase.ttft_ms.append(ttft)
    phase.requests += 1


# ----- figures ------------------------------------------------------------------------------------
def figures(phases: dict[str, Phase], echo_rtt: list[float], echo_cpu_us: float, n: int, n_long: int,
            long_tokens: int, idle: float) -> dict[str, Any]:
    """Every figure; `idle`: an agent's CPU fraction with no request (gossip, state publication)."""
    both = phases["direct"].cpu_s
    serve_us = both["node-1"] / (2 * n) * 1e6  # node-1 served every direct and every forwarded request
    forward_us = both["node-0"] / n * 1e6  # node-0 placed, forwarded and relayed every forwarded one
    long_us = phases["long"].cpu_s["node-1"] / n_long * 1e6
    token_us = (long_us - serve_us) / (long_tokens - SHORT_TOKENS)
    streamed_us = phases["streamed"].cpu_s["node-0"] / n_long * 1e6
    relay_us = (streamed_us - forward_us) / long_tokens  # one StreamToken frame per token
    place_us = forward_us - 2 * relay_us  # less the FirstToken and the Done it relays
    backend_us = both.get("backend", float("nan")) / (2 * n) * 1e6
    backend_long_us = phases["long"].cpu_s.get("backend", float("nan")) / n_long * 1e6
    backend_token_us = (backend_long_us - backend_us) / (long_tokens - SHORT_TOKENS)
    p50 = {k: statistics.median(p.ttft_ms) for k, p in phases.items() if k != "cold"}
    echo_p50 = statistics.median(echo_rtt)
    return {
        "requests_per_phase": n, "long_requests": n_long, "long_tokens": long_tokens,
        "echo_rtt_p50_ms": round(echo_p50, 4), "echo_cpu_us_per_msg": round(echo_cpu_us, 2),
        "direct_ttft_p50_ms": round(p50["direct"], 3), "forwarded_ttft_p50_ms": round(p50["forwarded"], 3),
        "forward_adds_ttft_p50_ms": round(p50["forwarded"] - p50["direct"], 3),
        "forward_adds_vs_echo_rtt": round((p50["forwarded"] - p50["direct"]) / echo_p50, 2) if echo_p50 else None,
        "first_direct_ttft_ms": round(phases["direct"].first_ms, 3),
        "first_forwarded_ttft_ms": round(phases["forwarded"].first_ms, 3),
        # the first forward of node-0's life (node-1's serving path already warm), beyond a warm one
        "first_forward_extra_ms": round(phases["forwarded"].first_ms - p50["forwarded"], 3),
        "backend_cpu_us_per_request": round(backend_us, 1),
        "cold_starts": phases["cold"].requests,
        "launch_extra_ms": [round(x, 1) for x in phases["cold"].ttft_ms],
        "launch_extra_median_ms": round(statistics.median(phases["cold"].ttft_ms), 1),
        "backend_cpu_us_per_token": round(backend_token_us, 2),
        "agent_idle_cpu_fraction": round(idle, 4),
        "serve_us": round(serve_us, 1), "token_us": round(token_us, 2),
        "forward_us": round(forward_us, 1), "relay_us": round(relay_us, 2), "place_us": round(place_us, 1),
        "serve_vs_echo": round(serve_us / echo_cpu_us, 2) if echo_cpu_us > 0 else None,
        "place_vs_echo": round(place_us / echo_cpu_us, 2) if echo_cpu_us > 0 else None,
        "relay_vs_echo": round(relay_us / echo_cpu_us, 2) if echo_cpu_us > 0 else None,
        "host_load_1m": round(psutil.getloadavg()[0], 2),
    }


def print_table(f: dict[str, Any]) -> None:
    print(f"node agents on loopback, {f['requests_per_phase']} direct and forwarded requests, "
          f"{f['long_requests']} long and streamed ({f['long_tokens']} tokens), one at a time "
          f"(host load average {f['host_load_1m']})")
    print(f"  baseline (bare ROUTER, decode + encode): round trip p50 {f['echo_rtt_p50_ms']:.3f} ms, "
          f"CPU {f['echo_cpu_us_per_msg']:.1f} µs per message")
    print(f"  TTFT p50: direct {f['direct_ttft_p50_ms']:.2f} ms, forwarded {f['forwarded_ttft_p50_ms']:.2f} ms; "
          f"a forward adds {f['forward_adds_ttft_p50_ms']:.2f} ms "
          f"({f['forward_adds_vs_echo_rtt']}x the echo round trip)")
    print(f"  first request of each path: direct {f['first_direct_ttft_ms']:.1f} ms, forwarded "
          f"{f['first_forwarded_ttft_ms']:.1f} ms (the first forward: {f['first_forward_extra_ms']:.1f} ms more "
          f"than a warm one)")
    print(f"  the backend (emulator) process: {f['backend_cpu_us_per_request']:.0f} µs CPU per short request, "
          f"{f['backend_cpu_us_per_token']:.0f} µs per token; an idle agent: {f['agent_idle_cpu_fraction']:.1%} "
          "of a core (gossip, state publication)")
    print(f"  a cold start waited {f['launch_extra_median_ms']:.0f} ms (median of {f['cold_starts']}: "
          f"{', '.join(f'{x:.0f}' for x in f['launch_extra_ms'])}) beyond the modelled load: the instance's "
          "process start-up and /health polls")
    print("  agent CPU per message                    µs     x echo")
    for key, what in (("serve_us", "serve one request (node-1)"),
                      ("place_us", "take, place, forward an Infer (node-0)"),
                      ("relay_us", "relay one answer frame (node-0)")):
        ratio = f[key.replace("_us", "_vs_echo")]
        print(f"    {what:<38} {f[key]:>8.1f} {'-' if ratio is None else ratio:>8}")
    print(f"    {'read one backend token (node-1)':<38} {f['token_us']:>8.1f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI: few requests per phase")
    p.add_argument("--requests", type=int, default=300, help="direct and forwarded requests (default 300; --quick 60)")
    p.add_argument("--long-requests", type=int, default=60, help="long and streamed requests (default 60; --quick 5)")
    p.add_argument("--echo-messages", type=int, default=3000, help="baseline round trips (default 3000; --quick 1000)")
    p.add_argument("--long-tokens", type=int, default=34, help="tokens of a long / streamed request (default 34)")
    p.add_argument("--idle-s", type=float, default=3.0, help="idle window for the agents' background CPU (default 3)")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.long_requests = min(args.requests, 60), min(args.long_requests, 5)
        args.echo_messages, args.idle_s = min(args.echo_messages, 1000), min(args.idle_s, 1.0)
    if min(args.requests, args.long_requests, args.echo_messages) < 1 or args.long_tokens <= SHORT_TOKENS \
            or args.idle_s <= 0:
        p.error(f"--requests, --long-requests and --echo-messages must be >= 1, --long-tokens > {SHORT_TOKENS} "
                "and --idle-s > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    echo_rtt, echo_cpu = measure_echo(args.echo_messages)
    with tempfile.TemporaryDirectory() as tmp, two_peers(Path(tmp)) as (entry, holder):
        phases, idle = run_phases(entry, holder, args.requests, args.long_requests, args.long_tokens, args.idle_s)
    f = figures(phases, echo_rtt, echo_cpu, args.requests, args.long_requests, args.long_tokens, idle)
    print_table(f)
    print(json.dumps(f))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
