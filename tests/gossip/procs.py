"""Run real `daemons.gossip.agent` processes on loopback and follow their JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    """`n` distinct currently free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class Peer:
    node_id: str
    addr: str
    proc: subprocess.Popen[bytes]
    lines: list[dict[str, Any]] = field(default_factory=list)

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()


class Cluster:
    """Gossip agent processes; every line they print lands in `inbox` as (peer, obj)."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._threads: list[threading.Thread] = []

    def spawn(self, node_id: str, port: int, seeds: Sequence[str], preset: str, extra: Sequence[str] = ()) -> Peer:
        addr = f"tcp://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "daemons.gossip.agent", "--id", node_id, "--bind", addr, "--preset", preset]
        for s in seeds:
            cmd += ["--seed", s]
        cmd += list(extra)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        peer = Peer(node_id, addr, proc)
        self.peers[node_id] = peer
        t = threading.Thread(target=self._read, args=(peer,), daemon=True)
        t.start()
        self._threads.append(t)
        return peer

    def _read(self, peer: Peer) -> None:
        assert peer.proc.stdout is not None
        for raw in peer.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
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

    def kill9(self, node_id: str) -> None:
        self.peers[node_id].proc.send_signal(signal.SIGKILL)
        self.peers[node_id].proc.wait(timeout=10)

    def close(self) -> None:
        """Stop every process we started: SIGTERM, then SIGKILL after a grace period."""
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


def membership(peer: Peer) -> dict[str, str]:
    """node -> latest event kind, from the peer's event lines."""
    state: dict[str, str] = {}
    for obj in list(peer.lines):
        if obj.get("ev") == "event" and obj["kind"] != "record-updated":
            state[obj["node"]] = obj["kind"]
    return state


def alive_set(peer: Peer) -> set[str]:
    return {n for n, k in membership(peer).items() if k in ("joined", "alive-again")}


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()
