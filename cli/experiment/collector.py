"""Collects the cluster's telemetry during a run: node state each second, cluster events.

Nodes publish `NodeState` to the collector's SUB address (besides the coordinator's); the
collector samples the latest state of every node once a second into nodes.csv rows and
records the coordinator's `ClusterEvent`s into events.csv rows. It is also a failure
detector of its own, the same in both modes: a node whose NodeState stream stops for
SILENT_AFTER_S gets a `silent` event, and `heard_again` when it resumes (a new boot
generation says `restarted` in detail). Checked each second, so a silence is noticed
within SILENT_AFTER_S + 1 s + the node's publish interval (1 s) of the node's last word.
Coordinators beat once a second on their events PUB (`CoordinatorState`); one silent for
COORDINATOR_SILENT_S gets `coordinator_silent`, and `coordinator_heard_again` when it beats
again. It runs in a thread with its own sockets, so it never competes with the load generator's sends. Rows carry Unix
time until `write()` makes them relative to the load generator's t = 0.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from daemons.bus import activation, make_socket, parse_frame
from daemons.bus.authz import Identity
from daemons.bus.client import Client
from daemons.bus.security import CurveClient, Security, stop_zap
from daemons.bus.sockets import authenticated, guard
from daemons.core.errors import SchemaError, WireError
from daemons.core.messages import ClusterEvent, CoordinatorState, NodeState, StatusReply
from daemons.core.schema import from_dict
from daemons.rundir import EVENTS, NODES, Event, NodeSample, write_events, write_nodes
from daemons.rundir.nodes import state_sample

SILENT_AFTER_S = 3.0  # a node not heard for this long is sampled as not alive
COORDINATOR_SILENT_S = 2.5  # two and a half missed coordinator heartbeats (1 s apart)


@dataclass
class Collector:
    """The run's observer: samples every node's state once a second and records the cluster's events.

    Subscribes to (or asks):
    - the nodes' `NodeState`, published to `address` (its SUB, bound here; local clusters),
      or, with `poll`, asked of each node by a status request every second (a deployed
      cluster, whose nodes do not publish to us); with `security`, a NodeState counts only
      from the node's own key;
    - the coordinators' events PUBs in `events_from`: `ClusterEvent`s and the
      `CoordinatorState` heartbeats;
    - `event()` calls from the fault injector (faults, resumes, heals).

    Writes (`write()`, after the run): nodes.csv, one NodeSample per node per second of the
    run, and events.csv, every event including its own failure detector's `silent`,
    `heard_again`, `coordinator_silent` and `coordinator_heard_again` (daemons/rundir).
    Both carry Unix time until `write()` makes it relative to the load generator's t = 0.
    """

    address: str
    events_from: list[str] = field(default_factory=list)
    # A deployed cluster's nodes do not publish to us: ask each for its state every second.
    poll: dict[str, str] = field(default_factory=dict)  # node name -> endpoint
    curve: CurveClient | None = None
    # A local cluster with CURVE: our SUB is a server (nodes connect to it) checked by ZAP, and
    # a NodeState counts only from the node's own key (daemons/bus/authz.py).
    security: Security | None = None
    samples: list[NodeSample] = field(default_factory=list)  # t_s: Unix time
    events: list[Event] = field(default_factory=list)  # t_s: Unix time
    _latest: dict[str, tuple[float, NodeState]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _silent: set[str] = field(default_factory=set)
    _coordinators: dict[str, float] = field(default_factory=dict)  # name -> last heartbeat (monotonic)
    _silent_coordinators: set[str] = field(default_factory=set)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def event(self, kind: str, target: str, detail: str = "") -> None:
        self.events.append(Event(time.time(), kind, target, detail))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        ctx = zmq.Context()
        secure = self.security is not None and self.security.enabled
        if self.security is not None:
            self.security.start_zap(ctx)
        client = self.security.client if self.security else self.curve
        # Two SUBs: with CURVE a socket is either a server (nodes connect to the one we bind)
        # or a client (the one that connects to the coordinators' events PUBs), never both.
        sub = make_socket(ctx, zmq.SUB, curve=self.security.bind_server() if self.security else self.curve)
        activation.bind(sub, self.address)  # the launcher's listening socket (runner.py offers it)
        events = make_socket(ctx, zmq.SUB, curve=client)
        askers = {name: Client(endpoint, curve=client) for name, endpoint in self.poll.items()}
        for address in self.events_from:
            events.connect(address)
        poller = zmq.Poller()
        for sock in (sub, events):
            poller.register(sock, zmq.POLLIN)
        self._ready.set()
        next_sample = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(max(1, int((next_sample - time.monotonic()) * 1000))))
                if sub in ready:  # from the nodes: checked against the sender's key (authz)
                    frames, peer = authenticated(sub.recv_multipart(copy=not secure))
                    self._take(frames[-1], peer, secure)
                if events in ready:  # from a coordinator we chose, authenticated by the server key
                    self._take(events.recv())
                if time.monotonic() >= next_sample:
                    self._ask(askers)
                    self._sample()
                    next_sample += 1.0
        finally:
            for asker in askers.values():
                asker.close()
            sub.close(0)
            events.close(0)
            stop_zap(ctx)
            ctx.term()

    def _ask(self, askers: dict[str, Client]) -> None:
        for name, asker in askers.items():
            try:
                reply = asker.status(0.2)
            except (TimeoutError, WireError):
                continue  # a silent node: _sample reports it
            state = own_state(reply, name)
            if state is not None:
                self._latest[name] = (time.monotonic(), state)

    def _take(self, frame: bytes, peer: Identity | None = None, secure: bool = False) -> None:
        env = parse_frame(frame, "publisher")
        if env is None or (secure and not guard(peer, env.type, env.sender, env.body)):
            return
        if isinstance(env.body, NodeState):
            name = env.body.node
            previous = self._latest.get(name)
            now = time.monotonic()
            if name in self._silent:
                self._silent.discard(name)
                restarted = previous is not None and previous[1].gen != env.body.gen
                detail = f"after {now - previous[0]:.1f} s" if previous else ""
                self.event("heard_again", name, detail + (";restarted" if restarted else ""))
            self._latest[name] = (now, env.body)
        elif isinstance(env.body, ClusterEvent):
            self.event(env.body.kind, env.body.node, env.body.detail)
        elif isinstance(env.body, CoordinatorState):
            name, now = env.body.name, time.monotonic()
            if name in self._silent_coordinators:
                self._silent_coordinators.discard(name)
                self.event("coordinator_heard_again", name,
                           f"after {now - self._coordinators[name]:.1f} s;{env.body.state};epoch={env.body.epoch}")
            self._coordinators[name] = now

    def _sample(self) -> None:
        now = time.monotonic()
        for name, heard in self._coordinators.items():
            if now - heard >= COORDINATOR_SILENT_S and name not in self._silent_coordinators:
                self._silent_coordinators.add(name)
                self.event("coordinator_silent", name, f"no heartbeat for {now - heard:.1f} s")
        for name, (heard, state) in sorted(self._latest.items()):
            alive = now - heard < SILENT_AFTER_S
            if not alive and name not in self._silent:
                self._silent.add(name)
                self.event("silent", name, f"no NodeState for {now - heard:.1f} s")
            self.samples.append(state_sample(time.time(), state, alive))

    def write(self, run_dir: Path, t0_wall: float, end_s: float) -> None:
        """nodes.csv for 0 <= t <= end_s (the run itself), events.csv for all events."""
        samples = [dataclasses.replace(s, t_s=round(s.t_s - t0_wall, 3)) for s in self.samples]
        write_nodes(run_dir / NODES, [s for s in samples if 0 <= s.t_s <= end_s])
        write_events(run_dir / EVENTS, [dataclasses.replace(e, t_s=round(e.t_s - t0_wall, 3)) for e in self.events])


def own_state(reply: StatusReply, name: str) -> NodeState | None:
    """A node's own NodeState from its status reply (a gossip peer lists every member)."""
    fields = set(NodeState.__dataclass_fields__)
    for row in reply.nodes:
        if row.get("node") == name:
            try:
                return from_dict(NodeState, {k: v for k, v in row.items() if k in fields}, name)
            except SchemaError:
                return None
    return None
