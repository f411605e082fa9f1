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
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from daemons.bus import activation
from daemons.bus.client import Client
from daemons.bus.client import free_endpoint as free_endpoint  # re-exported for tests (still racy)
from daemons.node.config import write_node_config
from daemons.node.instances import schedctl_command


def schedctl() -> str:
    return schedctl_command()


class NodeProcess:
    """`schedctl start node` as a child process, with its config in a temp file."""

    def __init__(self, config_path: Path, bind: str, log_path: Path, held: Sequence[socket.socket] = (),
                 metrics_bind: str = "") -> None:
        """`held`: listening sockets handed to the node (daemons/bus/activation.py), e.g. its bind;
        `metrics_bind`: HOST:PORT of its Prometheus endpoint (none when empty)."""
        self.bind = bind
        self.metrics_bind = metrics_bind
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # DEBUG: tests read the per-request lines (serving, forwarding), which a deployment keeps quiet.
        command = [schedctl(), "start", "node", "--config", str(config_path), "--log-level", "DEBUG"]
        if metrics_bind:
            command += ["--metrics-bind", metrics_bind]
        self.proc = subprocess.Popen(command,
                                     stdout=self._log, stderr=subprocess.STDOUT, pass_fds=[h.fileno() for h in held],
                                     env=activation.child_env(held, die_with_parent=False))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        with Client(self.bind) as client:
            try:
                client.wait_answering(timeout_s, lambda: self.proc.poll() is None)
            except (RuntimeError, TimeoutError) as exc:
                raise type(exc)(f"node at {self.bind}: {exc} (exit {self.proc.poll()}): {self.log()}") from None

    def children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            kids: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
            return kids
        return []

    def log(self) -> str:
        """The node's whole log, also after it stopped."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

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
def running_node(tmp: Path, name: str = "node-0", metrics_bind: str = "", **fields: Any) -> Iterator[NodeProcess]:
    """Start a node (emulated GPU, fast-loading emulator instances) and stop it afterwards,
    making sure none of its backend instances outlive it; `metrics_bind` opens its /metrics."""
    bind = fields.pop("bind", None)
    # Without a bind: a loopback port held listening and handed to the node, so nothing takes it first.
    held = [] if bind else [activation.listen()]
    bind = bind or activation.endpoint_of(held[0])
    fields.setdefault("gpu_backend", "emulated")
    fields.setdefault("init_s", 0.2)  # fast-starting instances keep tests short
    fields.setdefault("publish_to", [])
    config = write_node_config(tmp / f"{name}.toml", name=name, bind=bind, **fields)
    try:
        node = NodeProcess(config, bind, tmp / f"{name}.log", held, metrics_bind)
    finally:
        for sock in held:
            sock.close()
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


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll `check` until it holds; an AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")


def nvml_works() -> bool:
    """Whether NVML sees a real NVIDIA GPU here (the `gpu`-marked tests run only then)."""
    from daemons.node.gpu import open_nvml

    probe, _ = open_nvml()
    if probe is not None:
        probe.close()
    return probe is not None
