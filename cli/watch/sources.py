"""Where `schedctl watch` gets its observations: the daemons' status answers, a coordinator's
events PUB, and a local run's live journal. The I/O half of the watch; model.py folds.

The daemons do nothing new for us. `StatusPoller` (a thread with its own sockets) asks
each daemon for its status once a second, the question `schedctl status` asks, so a
cluster of N nodes gets N + 2 small requests a second; sockets set ZMQ_IMMEDIATE so a
question to a dead daemon is not queued and then answered in a burst when it returns.
With no journal (a deployed cluster) it also subscribes to the coordinators' events PUBs
for their ClusterEvents. A local run's journal (journal.py) carries everything the
runner's collector sees (faults, verdicts, detections, ClusterEvents) and the finished
requests; `Feed` reads what was appended since the last refresh.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from cli.watch import journal
from cli.watch.model import Snapshot, WatchModel
from daemons.bus import decode, encode, make_socket, parse_frame
from daemons.bus.security import CurveClient
from daemons.core.errors import WireError
from daemons.core.messages import ClusterEvent, StatusReply, StatusRequest
from daemons.rundir import Event, Slo

ASK_EVERY_S = 1.0
ANSWER_WITHIN_S = 0.8


@dataclass(frozen=True)
class Target:
    kind: str  # node | coordinator
    name: str
    endpoint: str


@dataclass(frozen=True)
class Status:
    """One answer (or its absence: reply None) at Unix time `t`."""

    target: Target
    reply: StatusReply | None
    t: float


class StatusPoller:
    """A thread asking every target for its status once a second; results on `out`."""

    def __init__(self, targets: list[Target], curve: CurveClient | None, events_from: list[str] | None = None,
                 name: str = "watch") -> None:
        self.targets, self.curve, self.events_from = targets, curve, events_from or []
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.out: queue.Queue[Status | Event] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        socks: dict[Any, Target] = {}
        for target in self.targets:
            sock = make_socket(ctx, zmq.DEALER, curve=self.curve)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.connect(target.endpoint)
            socks[sock] = target
        events = make_socket(ctx, zmq.SUB, curve=self.curve)
        for address in self.events_from:
            events.connect(address)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._round(socks, events)
                self._stop.wait(max(0.0, ASK_EVERY_S - (time.monotonic() - started)))
        finally:
            for sock in [*socks, events]:
                sock.close(0)
            ctx.term()

    def _round(self, socks: dict[Any, Target], events: Any) -> None:
        """Ask everyone, collect answers for ANSWER_WITHIN_S; the silent get a None."""
        asked: dict[Any, str] = {}
        for sock in socks:
            msg_id = uuid.uuid4().hex
            with contextlib.suppress(zmq.Again):  # not connected (ZMQ_IMMEDIATE): no answer this round
                sock.send(encode(StatusRequest(), self.name, msg_id), zmq.NOBLOCK)
                asked[sock] = msg_id
        poller = zmq.Poller()
        for sock in [*socks, events]:
            poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + ANSWER_WITHIN_S
        answered: set[Any] = set()
        while time.monotonic() < deadline and not self._stop.is_set():
            for sock, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                if sock is events:
                    self._event(events.recv())
                    continue
                try:
                    env = decode(sock.recv())
                except WireError:
                    continue
                if isinstance(env.body, StatusReply) and env.id == asked.get(sock):
                    answered.add(sock)
                    self.out.put(Status(socks[sock], env.body, time.time()))
        now = time.time()
        for sock, target in socks.items():
            if sock not in answered:
                self.out.put(Status(target, None, now))

    def _event(self, frame: bytes) -> None:
        env = parse_frame(frame, "coordinator events")
        if env is not None and isinstance(env.body, ClusterEvent):
            body = env.body
            self.out.put(Event(body.ts or time.time(), body.kind.lower(), body.node, body.detail))


@dataclass
class Feed:
    """The sources of one watch and the model they feed; `poll()` once per refresh."""

    model: WatchModel
    poller: StatusPoller
    run_dir: Path | None = None  # a local run's directory (its journal), if any
    arm: str = ""
    _events: journal.Tail | None = None
    _requests: journal.Tail | None = None
    _closed: bool = field(default=False)

    def __post_init__(self) -> None:
        if self.run_dir is not None:
            self._events = journal.Tail(self.run_dir / journal.LIVE / journal.EVENTS)
            self._requests = journal.Tail(self.run_dir / journal.LIVE / journal.REQUESTS)

    def start(self) -> None:
        self.poller.start()

    def poll(self, now: float | None = None) -> Snapshot:
        while True:
            try:
                item = self.poller.out.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Status):
                self.model.status(item.target.kind, item.target.name, item.reply, item.t)
            else:
                self.model.event(item)
        if self._events is not None and self._requests is not None:
            for doc in self._events.read():
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    self.model.event(journal.event_of(doc))
            for doc in self._requests.read():
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    self.model.request(*journal.request_of(doc), self.arm)
        return self.model.snapshot(time.time() if now is None else now)

    @property
    def ended(self) -> bool:
        return self.run_dir is not None and (self.run_dir / journal.LIVE / journal.ENDED).exists()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.poller.stop()


def targets_of(coordinators: dict[str, str], nodes: dict[str, str]) -> list[Target]:
    return ([Target("coordinator", n, e) for n, e in coordinators.items()] +
            [Target("node", n, e) for n, e in sorted(nodes.items())])


def local_feed(run_dir: Path, model: WatchModel | None = None) -> Feed | None:
    """A feed of a local run's arm from its journal and its daemons (None: no journal there)."""
    from cli.experiment.keys import LocalKeys

    run = journal.read_run(run_dir)
    if run is None:
        return None
    curve = LocalKeys(Path(run.keys)).client(run.key) if run.keys and Path(run.keys).is_dir() else None
    fresh = WatchModel(list(run.nodes), list(run.coordinators), run.slo)
    if model is not None:  # the next arm of the same run: keep the earlier arms' figures and events
        fresh.carry_from(model)
    return Feed(fresh, StatusPoller(targets_of(run.coordinators, run.nodes), curve), run_dir, run.scheduler)


def cluster_feed(cluster_file: Path, run_dir: Path | None = None, slo: Slo | None = None) -> Feed:
    """A feed of a deployed cluster: its cluster file's daemons, over CURVE when the file says so."""
    from cli.experiment.remote import RemoteCluster

    cluster = RemoteCluster.load(cluster_file)
    coordinators = {k: v for k, v in (("coordinator", cluster.coordinator), ("standby", cluster.standby)) if v}
    events = [e for e in (cluster.coordinator_events, cluster.standby_events) if e] if run_dir is None else []
    model = WatchModel(list(cluster.node_endpoints), list(coordinators), slo or Slo())
    poller = StatusPoller(targets_of(coordinators, cluster.node_endpoints), cluster.curve, events)
    return Feed(model, poller, run_dir, cluster.scheduler)
