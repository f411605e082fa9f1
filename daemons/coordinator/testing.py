"""Test kit: a real coordinator process, real PUB sockets feeding it NodeState, a client.

Shipped with the library (like `daemons.node.testing`) so the integration tests, the
benchmark and the experiment launcher start and feed a coordinator the same way.

    with running_coordinator(policy="least-loaded") as coord:
        with StatePublisher(coord.state_bind) as pub, Client(coord.bind) as client:
            pub.publish(node_state("n0", ready=["m1"]))
            client.wait_for_nodes({"n0"})
            print(client.schedule("r1", "m1").body)
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from daemons.bus import activation, encode, make_socket
from daemons.bus.client import Client as BusClient
from daemons.bus.envelope import Envelope
from daemons.core.messages import (
    CatalogEntry,
    GpuState,
    ModelState,
    NodeState,
    Schedule,
    StatusReply,
)
from daemons.core.process import DaemonProcess
from daemons.core.process import free_endpoint as free_endpoint  # re-exported for tests (still racy)
from daemons.core.process import schedctl_executable as schedctl  # re-exported for tests

GIB = 1 << 30
ENDS = ("bind", "state_bind", "events_bind")  # a coordinator's three sockets


def node_state(name: str, *, gen: int = 1, seq: int = 1, ready: tuple[str, ...] | list[str] = (),
               catalog: tuple[str, ...] | list[str] = ("m1", "m2", "m3"), queue: int = 0,
               memory_gib: int = 80, model_gib: int = 16, load_s: float = 5.0,
               endpoint: str = "") -> NodeState:
    """A plausible NodeState: `ready` models loaded and idle, `catalog` loadable."""
    models = [ModelState(m, "ready", 0, 0, model_gib * GIB, 0.0) for m in ready]
    used = len(models) * model_gib * GIB
    endpoint = endpoint or f"tcp://127.0.0.1:{20000 + zlib.crc32(name.encode()) % 10000}"
    return NodeState(
        node=name, endpoint=endpoint, gen=gen, seq=seq,
        gpus=[GpuState(0, "a100-80gb", memory_gib * GIB, used, 0.0)], models=models,
        queue_depth=queue, in_flight=0,
        catalog=[CatalogEntry(m, model_gib * GIB, load_s) for m in catalog])


class StatePublisher:
    """A node agent's PUB socket, connected to the coordinator's state address."""

    def __init__(self, state_bind: str) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = make_socket(self.ctx, zmq.PUB)
        self.sock.connect(state_bind)

    def publish(self, state: NodeState) -> None:
        self.sock.send(encode(state, state.node))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> StatePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Heartbeat:
    """Node agents that keep publishing: every `interval_s` each state goes out again with
    its seq increased, from a thread with its own PUB socket. `stop_beating(name)` makes
    one node fall silent (to test the failure detector); `set(state)` changes one."""

    def __init__(self, state_bind: str, states: list[NodeState], interval_s: float = 0.1) -> None:
        self.states = {s.node: s for s in states}
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(state_bind,), daemon=True)
        self._thread.start()

    def set(self, state: NodeState) -> None:
        with self._lock:
            self.states[state.node] = state

    def stop_beating(self, name: str) -> None:
        with self._lock:
            self.states.pop(name, None)

    def _run(self, state_bind: str) -> None:
        with StatePublisher(state_bind) as pub:
            while not self._stop.wait(self.interval_s):
                with self._lock:
                    for name, state in list(self.states.items()):
                        self.states[name] = dataclasses.replace(state, seq=state.seq + 1)
                        pub.publish(self.states[name])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(BusClient):
    """A blocking DEALER, as a loadgen uses to talk to the coordinator."""

    def schedule(self, request_id: str, model: str, exclude: list[str] | None = None,
                 timeout_s: float = 5.0) -> Envelope:
        self.send(Schedule(request_id, model, 100, 50, 0, exclude or []), request_id)
        return self.recv(timeout_s)

    def wait_for_nodes(self, names: set[str], timeout_s: float = 10.0,
                       publish: Any = None) -> StatusReply:
        """Until the coordinator lists `names` alive; `publish()` is called between polls
        (PUB drops what it sends before the connection is up: the slow joiner)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if publish is not None:
                publish()
            reply = self.status()
            alive = {r["node"] for r in reply.nodes if r.get("alive")}
            if names <= alive:
                return reply
            if time.monotonic() > deadline:
                raise TimeoutError(f"coordinator still lacks {sorted(names - alive)} after {timeout_s} s")
            time.sleep(0.05)


@dataclass
class CoordinatorProcess:
    """`schedctl start coordinator` as a child process (daemons/core/process.py) on free loopback ports."""

    daemon: DaemonProcess
    bind: str
    state_bind: str
    events_bind: str

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.daemon.popen

    @property
    def log_path(self) -> Path | None:
        return self.daemon.log_path

    def log(self) -> str:
        return self.daemon.log()

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        with Client(self.bind) as client:
            self.daemon.wait_ready(lambda: client.answers(0.3), timeout_s)

    def ha(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Its failover state from a status reply: name, role, state, epoch, peer..."""
        with Client(self.bind) as client:
            return client.status(timeout_s).info

    def stop(self, timeout_s: float = 10.0) -> int:
        return self.daemon.stop(timeout_s)


@contextlib.contextmanager
def running_coordinator(log_dir: Path | None = None, *extra: str, **flags: Any) -> Iterator[CoordinatorProcess]:
    """Start a coordinator on free ports (flags like policy="least-loaded", dead_after=0.5)
    and make sure it is gone afterwards."""
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        coord = stack.enter_context(coordinator_process(log_dir, list(extra), flags))
        coord.wait_ready()
        yield coord


@contextlib.contextmanager
def running_pair(log_dir: Path, **flags: Any) -> Iterator[tuple[CoordinatorProcess, CoordinatorProcess]]:
    """A primary and a backup coordinator that name each other (failover.py), on free ports,
    with their epoch files in `log_dir`; flags (e.g. failover_after=2) go to both."""
    # Held listening from now on and handed to each (activation.py): both know the other's
    # endpoints before either starts, and no other process can take them meanwhile.
    held = [{k: activation.listen() for k in ENDS} for _ in range(2)]
    ends = [{k: activation.endpoint_of(sock) for k, sock in h.items()} for h in held]
    with contextlib.ExitStack() as stack:
        pair = []
        for me, (role, name) in enumerate((("primary", "coordinator"), ("backup", "standby"))):
            peer = ends[1 - me]
            own = {**ends[me], "role": role, "name": name, "peer": peer["bind"],
                   "peer_events": peer["events_bind"], "epoch_file": log_dir / f"{name}.epoch", **flags}
            pair.append(stack.enter_context(coordinator_process(log_dir, [], own, list(held[me].values()))))
        for coord in pair:
            coord.wait_ready()
        yield pair[0], pair[1]


@contextlib.contextmanager
def coordinator_process(log_dir: Path, extra: list[str], flags: dict[str, Any],
                        held: list[socket.socket] | None = None) -> Iterator[CoordinatorProcess]:
    """A coordinator process; an endpoint not given in `flags` is a loopback port held listening
    and handed to it (daemons/bus/activation.py), so no other process can take it first."""
    held = list(held or [])
    ends = {}
    for key in ENDS:
        if not flags.get(key):
            held.append(activation.listen())
            flags[key] = activation.endpoint_of(held[-1])
        ends[key] = str(flags.pop(key))
    args = [schedctl(), "start", "coordinator", *extra]
    for key, value in {**ends, **flags}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    log_path = log_dir / f"{flags.get('name', 'coordinator')}-{uuid.uuid4().hex[:6]}.log"
    daemon = DaemonProcess(args, name=f"coordinator at {ends['bind']}", log_path=log_path, hand_down=held,
                           env=activation.child_env(held, die_with_parent=False))
    coord = CoordinatorProcess(daemon, ends["bind"], ends["state_bind"], ends["events_bind"])
    try:
        yield coord
    finally:
        coord.stop()
