"""Test kit: run real node agents as processes and talk to them over real sockets.

Shipped with the library (like `trio.testing`) so the coordinator, loadgen, experiment
and system tests start nodes the same way.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from daemons.bus import activation
from daemons.bus.client import Client
from daemons.core.process import DaemonProcess
from daemons.core.process import free_endpoint as free_endpoint  # re-exported for tests (still racy)
from daemons.core.process import schedctl_executable as schedctl  # re-exported for tests
from daemons.node.config import write_node_config


class NodeProcess:
    """`schedctl start node` as a child process (daemons/core/process.py), with its config in a file."""

    def __init__(self, config_path: Path, bind: str, log_path: Path, held: Sequence[socket.socket] = (),
                 metrics_bind: str = "") -> None:
        """`held`: listening sockets handed to the node (daemons/bus/activation.py), e.g. its bind;
        `metrics_bind`: HOST:PORT of its Prometheus endpoint (none when empty)."""
        self.bind = bind
        self.metrics_bind = metrics_bind
        self.log_path = log_path
        # DEBUG: tests read the per-request lines (serving, forwarding), which a deployment keeps quiet.
        command = [schedctl(), "start", "node", "--config", str(config_path), "--log-level", "DEBUG"]
        if metrics_bind:
            command += ["--metrics-bind", metrics_bind]
        self.daemon = DaemonProcess(command, name=f"node at {bind}", log_path=log_path, hand_down=held,
                                    env=activation.child_env(held, die_with_parent=False))

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.daemon.popen

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        with Client(self.bind) as client:
            self.daemon.wait_ready(client.answers, timeout_s)

    def children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            kids: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
            return kids
        return []

    def log(self) -> str:
        """The node's whole log, also after it stopped."""
        return self.daemon.log()

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL; none of its backend instances outlives it."""
        return self.daemon.stop(timeout_s)


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
    try:
        config = write_node_config(tmp / f"{name}.toml", name=name, bind=bind, **fields)
    except BaseException:
        for sock in held:
            sock.close()
        raise
    node = NodeProcess(config, bind, tmp / f"{name}.log", held, metrics_bind)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


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
