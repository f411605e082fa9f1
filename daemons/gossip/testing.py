"""Test kit: real gossip agents as processes on loopback, followed through their JSON.

Shared by the integration tests and `scripts/bench_gossip.py`, so both drive peers the
same way. Every process started here is stopped by `PeerCluster.close()`.

Each peer is this module run as a program: one `GossipAgent` (daemons/gossip/agent.py)
alone in a process, a harness around it that speaks JSON lines::

    python -m daemons.gossip.testing --id n1 --bind tcp://127.0.0.1:7001 \\
        --seed tcp://127.0.0.1:7000 --preset ci

It writes one JSON object per line on stdout: ``ready``, every membership
``event``, periodic ``stats``, and a ``view`` on request. It reads JSON commands
on stdin: ``{"cmd": "record", "body": {...}}``, ``{"cmd": "view"}``,
``{"cmd": "stats"}``, ``{"cmd": "leave"}``, ``{"cmd": "stop"}``. SIGTERM / SIGINT stop
it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import queue
import random
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.bus import activation
from daemons.bus.metrics import Endpoint
from daemons.core.process import DaemonProcess, stop_all
from daemons.gossip.agent import GossipAgent
from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import MemberEvent

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 5.0


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1, held listening until an agent takes each: one in
    this process adopts it when it binds, `PeerCluster.spawn` hands it to the agent process
    (daemons/bus/activation.py), so no other process can take it meanwhile."""
    endpoints = [activation.offer(activation.listen()) for _ in range(n)]
    return [int(e.rpartition(":")[2]) for e in endpoints]


@dataclass
class Peer:
    node_id: str
    addr: str
    daemon: DaemonProcess
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.daemon.popen

    def send(self, cmd: dict[str, Any]) -> None:
        """One JSON command on the agent's stdin (see the module docstring)."""
        if self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()


class PeerCluster:
    """Agent processes; every line they print lands in the peer's `lines` and in `inbox`.
    Their stderr goes to a log file each (`peers[id].daemon.log()`), in a directory `close()` removes."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.hogs: list[DaemonProcess] = []
        self.inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._logs = tempfile.TemporaryDirectory(prefix="peers-")

    def spawn(self, node_id: str, port: int, seeds: Sequence[str], preset: str, extra: Sequence[str] = ()) -> Peer:
        addr = f"tcp://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "daemons.gossip.testing", "--id", node_id, "--bind", addr, "--preset", preset]
        for s in seeds:
            cmd += ["--seed", s]
        fd = activation.claim(addr)  # the port free_ports() holds, if it came from there
        held = [] if fd is None else [fd]
        env = dict(activation.child_env(held, die_with_parent=False), PYTHONUNBUFFERED="1")
        daemon = DaemonProcess([*cmd, *extra], name=f"gossip agent {node_id}", cwd=REPO, env=env, hand_down=held,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               log_path=Path(self._logs.name) / f"{node_id}.log", append=True)
        peer = self.peers[node_id] = Peer(node_id, addr, daemon)
        reader = threading.Thread(target=self._read, args=(peer,), daemon=True)
        reader.start()
        self._threads.append(reader)
        return peer

    def _read(self, peer: Peer) -> None:
        assert peer.proc.stdout is not None
        for raw in peer.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            with self.lock:
                peer.lines.append(obj)
            self.inbox.put((peer.node_id, obj))

    def wait_for(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Poll `cond` (bounded by `timeout` seconds) while output keeps arriving."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            with contextlib.suppress(queue.Empty):
                self.inbox.get(timeout=0.05)
        return cond()

    def events(self, node_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.peers[node_id].lines if o.get("ev") == "event"]

    def membership(self, node_id: str) -> dict[str, str]:
        """node -> the latest membership event kind `node_id` has seen about it."""
        state: dict[str, str] = {}
        for ev in self.events(node_id):
            if ev["kind"] != "record-updated":
                state[ev["node"]] = ev["kind"]
        return state

    def alive_view(self, node_id: str) -> set[str]:
        return {n for n, k in self.membership(node_id).items() if k in ("joined", "alive-again")}

    def stats(self, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """Ask every running peer for its counters; wait (bounded) for the answers."""
        running = [p for p in self.peers.values() if p.proc.poll() is None]
        marks = {p.node_id: time.time() for p in running}
        for p in running:
            p.send({"cmd": "stats"})

        def latest(p: Peer) -> dict[str, Any] | None:
            with self.lock:
                found = [o for o in p.lines if o.get("ev") == "stats" and o["t"] >= marks[p.node_id]]
            return found[-1] if found else None

        self.wait_for(lambda: all(latest(p) is not None for p in running), timeout)
        return {p.node_id: s for p in running if (s := latest(p)) is not None}

    def kill9(self, node_id: str) -> None:
        self.peers[node_id].daemon.send_signal(signal.SIGKILL)
        self.peers[node_id].proc.wait(timeout=10)

    def start_hogs(self, count: int, seconds: float) -> None:
        """CPU hogs beside the cluster (bounded: each spins for `seconds`, then exits)."""
        code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
        for _ in range(count):
            self.hogs.append(DaemonProcess([sys.executable, "-c", code], name="cpu hog"))

    def close(self) -> None:
        """Stop every process we started: SIGTERM, then SIGKILL after a grace period."""
        stop_all(self.hogs, timeout_s=0.0)  # nothing to wait for: a hog's work is its own
        stop_all([p.daemon for p in self.peers.values()], timeout_s=STOP_TIMEOUT_S)
        for p in self.peers.values():
            for stream in (p.proc.stdin, p.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for t in self._threads:
            t.join(timeout=2)
        self._logs.cleanup()


@contextlib.contextmanager
def peer_cluster() -> Iterator[PeerCluster]:
    c = PeerCluster()
    try:
        yield c
    finally:
        c.close()


# ----- the harness: one agent in a process, JSON lines on stdin and stdout ---------------------
def _emit(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _event_json(ev: MemberEvent) -> dict[str, Any]:
    return {
        "ev": "event", "t": time.time(), "kind": ev.kind.value, "node": ev.node, "gen": ev.gen,
        "inc": ev.inc, "ver": None if ev.record is None else ev.record.ver, "origin": ev.origin,
        "restarted": ev.restarted,
    }


def _stats_json(agent: GossipAgent) -> dict[str, Any]:
    st = agent.transport.stats
    ml = agent.memberlist
    return {
        "ev": "stats", "t": time.time(), "node": agent.node_id, "live": ml.num_live,
        "health": ml.health, "inc": ml.incarnation, "bytes_in": st.bytes_in, "bytes_out": st.bytes_out,
        "msgs_in": st.msgs_in, "msgs_out": st.msgs_out, "send_dropped": st.send_dropped,
        "malformed": dict(st.malformed), "refutations": ml.stats.refutations,
    }


def _view_json(agent: GossipAgent) -> dict[str, Any]:
    members = [
        {
            "node": m.node, "addr": m.addr, "status": m.status, "gen": m.generation, "inc": m.incarnation,
            "ver": m.record_version, "age": m.record_age_s, "record": m.record, "self": m.is_self,
        }
        for m in agent.view()
    ]
    return {"ev": "view", "t": time.time(), "node": agent.node_id, "members": members}


async def _read_commands(agent: GossipAgent, stop: asyncio.Event) -> None:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # /dev/null, a file or a tty: no command channel
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return  # no usable stdin (closed, a tty under some runners): commands disabled
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            return  # EOF: keep running, commands simply stop
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "record":
                agent.update_local_record(cmd["body"])
            elif name == "view":
                _emit(_view_json(agent))
            elif name == "stats":
                _emit(_stats_json(agent))
            elif name == "leave":
                agent.transport.run(agent.memberlist.leave(agent.transport.now()))
            elif name == "stop":
                stop.set()
            else:
                raise ValueError(f"unknown command {name!r}")
        except (ValueError, KeyError, TypeError) as exc:
            _emit({"ev": "error", "t": time.time(), "error": str(exc)[:200]})


async def _churn(agent: GossipAgent, period: float, rng: random.Random) -> None:
    """Change our record every ~`period` s, like a busy node's queue depth does."""
    while True:
        await asyncio.sleep(rng.expovariate(1.0 / period))
        agent.update_local_record(_sample_record(agent, rng.randrange(64)))


def _sample_record(agent: GossipAgent, queue_depth: int) -> dict[str, Any]:
    return {
        "gpus": [{"idx": 0, "mem_total": 80 << 30, "mem_used": queue_depth << 28, "util": queue_depth / 64}],
        "queue_depth": queue_depth,
        "models": ["meta-llama/Llama-3.1-8B-Instruct"],
        "endpoint": agent.addr,
    }


async def run_agent(args: argparse.Namespace) -> int:
    config = GossipConfig.preset(args.preset)
    agent = GossipAgent(args.id, args.bind, advertise=args.advertise, seeds=args.seed, config=config)
    agent.add_listener(lambda ev: _emit(_event_json(ev)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    endpoint = _serve_metrics(agent, args.metrics_bind) if args.metrics_bind else None
    agent.update_local_record(json.loads(args.record) if args.record else _sample_record(agent, 0))
    _emit({"ev": "ready", "t": time.time(), "node": args.id, "addr": agent.addr, "gen": agent.generation})
    tasks = [asyncio.create_task(_read_commands(agent, stop))]
    rng = random.Random()
    if args.churn > 0:
        tasks.append(asyncio.create_task(_churn(agent, args.churn, rng)))

    async def report() -> None:
        while True:
            await asyncio.sleep(args.stats_interval)
            _emit(_stats_json(agent))

    if args.stats_interval > 0:
        tasks.append(asyncio.create_task(report()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.duration if args.duration > 0 else None)
    for task in tasks:
        task.cancel()
    _emit(_stats_json(agent))
    await agent.stop(leave=not args.no_leave)
    if endpoint is not None:
        endpoint.close()
    _emit({"ev": "stopped", "t": time.time(), "node": args.id})
    return 0


def _serve_metrics(agent: GossipAgent, bind: str) -> Endpoint:
    """The peer's Prometheus endpoint, on its own registry."""
    from prometheus_client import CollectorRegistry

    from daemons.bus.metrics import serve
    from daemons.gossip.metrics import GossipMetrics

    registry = CollectorRegistry()
    GossipMetrics.of(agent, registry)
    return serve(registry, bind)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m daemons.gossip.testing", description="Run one gossip peer.")
    p.add_argument("--id", required=True, help="node id (unique in the cluster)")
    p.add_argument("--bind", required=True, help="ROUTER address to bind, e.g. tcp://127.0.0.1:5561")
    p.add_argument("--advertise", help="address peers use to reach us (default: --bind)")
    p.add_argument("--seed", action="append", default=[], help="address of a member to join (repeatable)")
    p.add_argument("--preset", default="lan", choices=["lan", "wan", "local", "ci"])
    p.add_argument("--record", help="initial record body as JSON (default: a sample GPU record)")
    p.add_argument("--churn", type=float, default=0.0, help="change the record every ~S seconds (load)")
    p.add_argument("--stats-interval", type=float, default=0.0, help="print stats every S seconds")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: run until signalled)")
    p.add_argument("--no-leave", action="store_true", help="stop without announcing a leave")
    p.add_argument("--metrics-bind", default="", help="HOST:PORT of a Prometheus /metrics endpoint (default: none)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if not args.bind.startswith(("tcp://", "ipc://")):
        p.error("--bind must be a tcp:// or ipc:// address")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    activation.adopt()  # a launcher's listening socket for --bind, and the duty to die with it
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run_agent(args))
    except OSError as exc:  # zmq.ZMQError is an OSError: e.g. address in use
        print(f"gossip agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

