"""Test kit: run real node agents as processes and talk to them over real sockets.

Shipped with the library (like `trio.testing`) so the coordinator, loadgen, experiment
and system tests start nodes the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import zmq

from daemons.bus import decode, encode, make_socket
from daemons.bus.envelope import Envelope
from daemons.bus.messages import StatusReply, StatusRequest


def free_endpoint(host: str = "127.0.0.1") -> str:
    with socket.socket() as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def schedctl() -> str:
    return str(Path(sys.executable).parent / "schedctl")


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_node_config(path: Path, **fields: Any) -> Path:
    lines = ["[node]"] + [f"{k} = {toml_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Client:
    """A blocking DEALER that sends envelopes and waits for answers."""

    def __init__(self, endpoint: str, name: str = "") -> None:
        self.ctx = zmq.Context()
        self.name = name or f"test-{uuid.uuid4().hex[:8]}"
        self.sock = make_socket(self.ctx, zmq.DEALER)
        self.sock.connect(endpoint)

    def send(self, body: Any, msg_id: str = "") -> None:
        self.sock.send(encode(body, self.name, msg_id))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float = 10.0) -> Envelope:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer within {timeout_s} s")
        return decode(self.sock.recv())

    def until(self, types: set[str], timeout_s: float = 30.0) -> list[Envelope]:
        """Receive until a message of one of `types` arrives; return everything received."""
        got: list[Envelope] = []
        deadline = time.monotonic() + timeout_s
        while not got or got[-1].type not in types:
            got.append(self.recv(max(0.01, deadline - time.monotonic())))
        return got

    def status(self, timeout_s: float = 5.0) -> StatusReply:
        self.send(StatusRequest(), "status")
        while True:
            env = self.recv(timeout_s)
            if isinstance(env.body, StatusReply):
                return env.body

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


class NodeProcess:
    """`schedctl start node` as a child process, with its config in a temp file."""

    def __init__(self, config_path: Path, bind: str, log_path: Path) -> None:
        self.bind = bind
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([schedctl(), "start", "node", "--config", str(config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        client = Client(self.bind)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log()}")
                with contextlib.suppress(TimeoutError):
                    client.status(0.5)
                    return
            raise TimeoutError(f"node at {self.bind} did not answer within {timeout_s} s: {self.log()}")
        finally:
            client.close()

    def children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            kids: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
            return kids
        return []

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def running_node(tmp: Path, name: str = "node-0", **fields: Any) -> Iterator[NodeProcess]:
    """Start a node (emulated GPU, fast-loading emulator instances) and stop it afterwards,
    making sure none of its backend instances outlive it."""
    bind = fields.pop("bind", None) or free_endpoint()
    fields.setdefault("gpu_backend", "emulated")
    fields.setdefault("init_s", 0.2)  # fast-starting instances keep tests short
    fields.setdefault("publish_to", [])
    config = write_node_config(tmp / f"{name}.toml", name=name, bind=bind, **fields)
    node = NodeProcess(config, bind, tmp / f"{name}.log")
    try:
        node.wait_ready()
        yield node
    finally:
        kids = node.children()
        node.stop()
        _, alive = psutil.wait_procs(kids, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                os.kill(p.pid, signal.SIGKILL)
