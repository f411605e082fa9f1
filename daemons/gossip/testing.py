"""Test kit: real `daemons.gossip.agent` processes on loopback, followed through their JSON.

Shared by the integration tests and `scripts/bench_gossip.py`, so both drive peers the
same way. Every process started here is stopped by `PeerCluster.close()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.bus import activation

REPO = Path(__file__).resolve().parents[2]


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
    proc: subprocess.Popen[bytes]
    lines: list[dict[str, Any]] = field(default_factory=list)

    def send(self, cmd: dict[str, Any]) -> None:
        """One JSON command on the agent's stdin (see daemons/gossip/agent.py)."""
        if self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()


class PeerCluster:
    """Agent processes; every line they print lands in the peer's `lines` and in `inbox`."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.hogs: list[subprocess.Popen[bytes]] = []
        self.inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def spawn(self, node_id: str, port: int, seeds: Sequence[str], preset: str, extra: Sequence[str] = ()) -> Peer:
        addr = f"tcp://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "daemons.gossip.agent", "--id", node_id, "--bind", addr, "--preset", preset]
        for s in seeds:
            cmd += ["--seed", s]
        fd = activation.claim(addr)  # the port free_ports() holds, if it came from there
        held = [] if fd is None else [fd]
        env = dict(activation.child_env(held, die_with_parent=False), PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen([*cmd, *extra], cwd=REPO, env=env, pass_fds=held,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        finally:
            for d in held:
                os.close(d)
        peer = self.peers[node_id] = Peer(node_id, addr, proc)
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
        self.peers[node_id].proc.send_signal(signal.SIGKILL)
        self.peers[node_id].proc.wait(timeout=10)

    def start_hogs(self, count: int, seconds: float) -> None:
        """CPU hogs beside the cluster (bounded: each spins for `seconds`, then exits)."""
        code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
        for _ in range(count):
            self.hogs.append(subprocess.Popen([sys.executable, "-c", code]))

    def close(self) -> None:
        """Stop every process we started: SIGTERM, then SIGKILL after a grace period."""
        for h in self.hogs:
            if h.poll() is None:
                h.kill()
            h.wait(timeout=5)
        for p in self.peers.values():
            if p.proc.poll() is None:
                p.proc.terminate()
        deadline = time.monotonic() + 5.0
        for p in self.peers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=5)
            for stream in (p.proc.stdin, p.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for t in self._threads:
            t.join(timeout=2)


@contextlib.contextmanager
def peer_cluster() -> Iterator[PeerCluster]:
    c = PeerCluster()
    try:
        yield c
    finally:
        c.close()
