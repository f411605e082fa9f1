#!/usr/bin/env python3
"""Drive hostile and forged traffic at every port of a small local cluster, then check it.

The cluster (the test kits' real processes on loopback): a coordinator, a centralized node
publishing to it, a gossip-mode node, and an emulator. Every port gets, in turn, random
bytes, truncated and bit-flipped frames, frames over the size limit, well-formed envelopes
with wrong types and out-of-range values, forged messages (a node's state under another
name with extreme numbers; gossip claims at the largest incarnation), and a burst of short
connections; the events PUB gets oversized and many subscriptions; the emulator's HTTP port
gets garbage, truncated and oversized requests, deeply nested JSON and idle connections.

Then, per daemon: does it still answer (status; a real schedule, infer and generate
succeed), its RSS and open file descriptors before and after (psutil), and how many log
lines it wrote. Prints a table and one line of JSON; exits 1 if a daemon died or stopped
answering.

    python scripts/fuzz_daemons.py            # 10,000 messages per port
    python scripts/fuzz_daemons.py --quick    # CI: 150 per port, about 30 s with start-up

Every loop is bounded in count and time; every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemons.bus import encode
from daemons.bus.client import Client
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.coordinator.testing import Client as CoordinatorClient
from daemons.coordinator.testing import node_state, running_coordinator
from daemons.core.messages import EpochNotice, Infer, Schedule, StatusRequest, WitnessQuery
from daemons.core.process import free_endpoint
from daemons.core.schema import to_dict
from daemons.emulator.testing import start_emulator
from daemons.gossip import messages as gm
from daemons.node.testing import running_node

SMALL = "facebook/opt-125m"


@dataclass
class Target:
    name: str
    pid: int
    log: Callable[[], str]
    answers: Callable[[], bool]  # a status request and a real request succeed
    ports: dict[str, int] = field(default_factory=dict)  # port label -> messages sent
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)


def usage(pid: int) -> dict[str, float]:
    p = psutil.Process(pid)
    return {"rss_mb": p.memory_info().rss / 2**20, "fds": float(p.num_fds()), "log": 0.0}


# ------------------------------------------------------------------ hostile frames
def envelope_frames(rng: random.Random, sender: str) -> Iterator[bytes]:
    """An endless mix of bad frames for a schedctl bus socket."""
    good = encode(Schedule("r-fuzz", SMALL, 10, 10), sender, "r-fuzz")
    forged_state = to_dict(node_state("node-0", gen=1, seq=2**62, ready=[SMALL], queue=2**40))
    kinds: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 256)),
        lambda: good[: rng.randint(0, len(good) - 1)],
        lambda: bytes(b ^ (1 << rng.randint(0, 7)) if rng.random() < 0.05 else b for b in good),
        lambda: msgpack.packb([1, "schedule", sender, "x", {"request_id": 7, "model": [], "prompt_tokens": "x",
                                                            "max_new_tokens": None}]),
        lambda: msgpack.packb([1, "schedule", sender, "x", {"request_id": "r", "model": SMALL,
                                                            "prompt_tokens": 2**63 - 1, "max_new_tokens": -5}]),
        lambda: msgpack.packb([1, "state", "node-0", "", forged_state]),
        lambda: msgpack.packb([1, "state", "evil node", "", {**forged_state, "node": "x" * 5000}]),
        lambda: msgpack.packb([1, "done", sender, "r", {"request_id": "r", "node": "n", "tokens": 1,
                                                        "finish_reason": "length", "timings": {"x": float("nan")}}]),
        lambda: encode(EpochNotice("coordinator", 2**31), sender),
        lambda: encode(WitnessQuery("forger", 2**31, "tcp://127.0.0.1:1", 60.0), sender),
        lambda: b"\x91" * 5000 + b"\xc0",  # arrays nested 5,000 deep
    ]
    while True:
        yield rng.choice(kinds)()


def gossip_frames(rng: random.Random, victim: str) -> Iterator[bytes]:
    top = gm.MAX_INCARNATION
    forged = [
        gm.Suspect(victim, 1, top, "mallory"), gm.Dead(victim, 1, top, "mallory"),
        gm.Alive(victim, "tcp://127.0.0.1:1", 2**62, 0), gm.State(victim, 1, gm.MAX_VERSION, {"forged": True}),
    ]
    good = gm.encode(gm.Message("mallory", 0, 1, gm.Ping(victim)))
    kinds: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 256)),
        lambda: good[: rng.randint(0, len(good) - 1)],
        lambda: gm.encode(gm.Message("mallory", 0, 0, rng.choice(forged), tuple(rng.sample(forged, 2)))),
        lambda: msgpack.packb([1, 5, "mallory", 2**64 - 1, 0, ["n", "a", -1, 2**63], []]),
        lambda: gm.encode(gm.Message("mallory", 0, 0, gm.Alive(f"ghost-{rng.randrange(10**9)}",
                                                               "tcp://127.0.0.1:1", 1, 0))),
    ]
    while True:
        yield rng.choice(kinds)()


def blast_router(endpoint: str, frames: Iterator[bytes], count: int, deadline: float,
                 identity: bytes | None = None) -> int:
    """Send `count` frames from a few DEALERs, plus a burst of short-lived connections and
    one frame over the size limit; returns the frames sent."""
    ctx: zmq.Context[Any] = zmq.Context()
    sent = 0
    try:
        socks = []
        for i in range(4):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100_000)
            if identity is not None:
                s.setsockopt(zmq.IDENTITY, identity + str(i).encode())
            s.connect(endpoint)
            socks.append(s)
        time.sleep(0.2)  # let the connections come up
        with contextlib.suppress(zmq.Again):  # over MAXMSGSIZE: the daemon disconnects us
            socks[0].send(os.urandom(MAX_FRAME_BYTES + 1024), zmq.NOBLOCK)
        sent += 1
        while sent < count and time.monotonic() < deadline:
            with contextlib.suppress(zmq.Again):
                socks[sent % len(socks)].send(next(frames), zmq.NOBLOCK)
            sent += 1
        for _ in range(min(200, count // 10)):  # many connections
            if time.monotonic() > deadline:
                break
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            with contextlib.suppress(zmq.Again):
                s.send(next(frames), zmq.NOBLOCK)
            s.close(0)
            sent += 1
        time.sleep(0.2)
    finally:
        ctx.destroy(0)
    return sent


def blast_sub(endpoint: str, frames: Iterator[bytes], count: int, deadline: float) -> int:
    """Publish bad frames into a SUB (the coordinator's state socket)."""
    ctx: zmq.Context[Any] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.connect(endpoint)
    time.sleep(0.3)  # slow joiner
    sent = 0
    try:
        while sent < count and time.monotonic() < deadline:
            pub.send(next(frames))
            sent += 1
        time.sleep(0.2)
    finally:
        ctx.destroy(0)
    return sent


def blast_subscriptions(endpoint: str, count: int, deadline: float) -> int:
    """Oversized and many subscriptions at the events PUB."""
    ctx: zmq.Context[Any] = zmq.Context()
    sent = 0
    try:
        for i in range(min(count, 50)):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SUBSCRIBE, os.urandom(64 << 10 if i % 2 else 16))
            s.connect(endpoint)
            sent += 1
        many = ctx.socket(zmq.SUB)
        many.setsockopt(zmq.LINGER, 0)
        many.connect(endpoint)
        while sent < count and time.monotonic() < deadline:
            many.setsockopt(zmq.SUBSCRIBE, os.urandom(200))
            sent += 1
        time.sleep(0.3)
    finally:
        ctx.destroy(0)
    return sent


def blast_http(port: int, count: int, deadline: float, rng: random.Random) -> int:
    nested = b"[" * 100_000 + b"]" * 100_000
    payloads = [
        lambda: rng.randbytes(rng.randint(1, 512)),
        lambda: (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 9\r\n\r\n{\"inputs\""),
        lambda: (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000000\r\n\r\n" + b"x" * 65536),
        lambda: (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(nested)).encode() + b"\r\n\r\n" + nested),
        lambda: (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n"
                 b'{"inputs": 5, "parameters": {"max_new_tokens": -1e99}}'),
        lambda: b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ]
    sent = 0
    idle: list[socket.socket] = []
    while sent < count and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(rng.choice(payloads)())
            s.settimeout(0.2)
            with contextlib.suppress(OSError):
                s.recv(4096)
        sent += 1
        if sent % 10 == 0 and len(idle) < 200:  # idle connections that never send a byte
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    for s in idle:
        s.close()
    return sent


# ------------------------------------------------------------------ liveness
def bus_answers(endpoint: str, request: Callable[[Client], bool] | None = None) -> bool:
    try:
        with Client(endpoint) as client:
            client.send(StatusRequest(), "fuzz-status")
            if client.recv(10.0).type != "status":
                return False
            return request is None or request(client)
    except Exception:
        return False


def infer_ok(client: Client) -> bool:
    rid = f"fuzz-real-{time.monotonic_ns()}"
    client.send(Infer(rid, SMALL, "one two three", 3), rid)
    got = client.until({"done", "error"}, timeout_s=60)
    return got[-1].type == "done"


def schedule_ok(client: Client) -> bool:
    client.send(Schedule("fuzz-real", SMALL, 10, 3), "fuzz-real")
    return client.recv(10.0).type == "placement"


def http_answers(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            if r.status != 200:
                return False
        req = urllib.request.Request(f"{base}/generate", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"inputs": "hello", "parameters": {"max_new_tokens": 3}}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status == 200 and "generated_text" in json.loads(r.read())
    except Exception:
        return False


# ------------------------------------------------------------------ main
def run(per_port: int, budget_s: float, seed: int) -> tuple[list[Target], bool]:
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fuzz-")))
        coord = stack.enter_context(running_coordinator(tmp, dead_after=5))
        node = stack.enter_context(running_node(tmp, "node-0", publish_to=[coord.state_bind], init_s=0.1))
        gbind = free_endpoint()
        peer = stack.enter_context(running_node(tmp, "peer-0", scheduler="gossip", gossip_bind=gbind, init_s=0.1))
        emu = stack.enter_context(start_emulator(SMALL))
        with CoordinatorClient(coord.bind) as c:
            c.wait_for_nodes({"node-0"}, timeout_s=30)
        targets = {
            "coordinator": Target("coordinator", coord.proc.pid, coord.log,
                                  lambda: bus_answers(coord.bind, schedule_ok)),
            "node": Target("node", node.proc.pid, node.log, lambda: bus_answers(node.bind, infer_ok)),
            "gossip-node": Target("gossip-node", peer.proc.pid, peer.log, lambda: bus_answers(peer.bind)),
            "emulator": Target("emulator", emu.pid, emu.stderr_text, lambda: http_answers(emu.base_url)),
        }
        ok = all(t.answers() for t in targets.values())  # warm: cold starts happen before "before"
        for t in targets.values():
            t.before = {**usage(t.pid), "log": len(t.log().splitlines())}
        deadline = time.monotonic() + budget_s
        tc, tn, tg, te = targets["coordinator"], targets["node"], targets["gossip-node"], targets["emulator"]
        tc.ports["router"] = blast_router(coord.bind, envelope_frames(rng, "fuzz"), per_port, deadline)
        tc.ports["state-sub"] = blast_sub(coord.state_bind, envelope_frames(rng, "fuzz"), per_port, deadline)
        tc.ports["events-pub"] = blast_subscriptions(coord.events_bind, per_port, deadline)
        tn.ports["router"] = blast_router(node.bind, envelope_frames(rng, "fuzz"), per_port, deadline)
        tg.ports["router"] = blast_router(peer.bind, envelope_frames(rng, "fuzz"), per_port, deadline)
        tg.ports["gossip"] = blast_router(gbind, gossip_frames(rng, "peer-0"), per_port, deadline,
                                          identity=b"tcp://127.0.0.1:9")
        te.ports["http"] = blast_http(emu.port, per_port, deadline, rng)
        time.sleep(1.0)
        for t in targets.values():
            alive = psutil.pid_exists(t.pid) and psutil.Process(t.pid).status() != psutil.STATUS_ZOMBIE
            answered = alive and t.answers()
            t.after = {**usage(t.pid), "log": len(t.log().splitlines())} if alive else {}
            t.after["alive"] = float(answered)
            ok = ok and answered
        return list(targets.values()), ok


def report(targets: list[Target], ok: bool, elapsed: float) -> None:
    print(f"{'daemon':<12} {'port':<11} {'messages':>9} {'answers':>8} {'RSS MB before→after':>20} "
          f"{'fds before→after':>17} {'log lines':>10}")
    for t in targets:
        b, a = t.before, t.after
        for i, (port, n) in enumerate(t.ports.items()):
            first = i == 0
            rss = f"{b['rss_mb']:.0f}→{a.get('rss_mb', float('nan')):.0f}" if first else ""
            fds = f"{b['fds']:.0f}→{a.get('fds', float('nan')):.0f}" if first else ""
            logs = f"{a.get('log', 0) - b['log']:.0f}" if first else ""
            alive = ("yes" if a.get("alive") else "NO") if first else ""
            print(f"{t.name if first else '':<12} {port:<11} {n:>9} {alive:>8} {rss:>20} {fds:>17} {logs:>10}")
    print(json.dumps({"ok": ok, "elapsed_s": round(elapsed, 1), "daemons": {
        t.name: {"ports": t.ports, "before": t.before, "after": t.after} for t in targets}}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI: 150 messages per port, 30 s budget")
    ap.add_argument("--messages", type=int, default=10_000, help="messages per port (default 10,000)")
    ap.add_argument("--budget-s", type=float, default=600.0, help="time for all the traffic together")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its daemons
    per_port, budget = (150, 30.0) if args.quick else (args.messages, args.budget_s)
    start = time.monotonic()
    targets, ok = run(per_port, budget, args.seed)
    report(targets, ok, time.monotonic() - start)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
