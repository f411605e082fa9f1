"""A deterministic discrete-event network that drives many `Memberlist` machines.

The virtual clock jumps from one event to the next (message deliveries, node
timers from ``next_deadline()``, scheduled actions), so simulated minutes of a
1000-member cluster cost seconds of CPU. Everything random (latency, loss, each
member's choices) comes from generators seeded from `seed`, so a run repeats
exactly.

Faults, as a test or a benchmark needs them:

- ``latency=(lo, hi)`` uniform one-way delay, ``loss`` probability per message;
- ``partition(groups)`` / ``heal()``: messages between groups are dropped;
- ``pause(id)`` / ``resume(id)``: the member stops processing and its timers stop,
  like SIGSTOP; frames sent to it are buffered (as ZeroMQ would) and handled on
  resume, and the pause is reported as event-loop lag, as the real transport does;
- ``kill(id)``: the member vanishes; ``restart(id)`` boots it again with a new
  generation and rejoins.

Usage::

    net = SimNetwork(GossipConfig.lan(), seed=1)
    for i in range(16):
        net.add_node(f"n{i}")
    net.bootstrap()                  # or: net.join(id, ["n0"]) for each node
    net.run_for(5.0)
    net.kill("n3")
    net.run_until(60.0, until=lambda: net.all_see("n3", Status.DEAD))
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import MemberEvent, MemberInfo, Memberlist, Outbound
from daemons.gossip.messages import Message, Status, decode, encode

_DELIVER = 0
_WAKE = 1
_CALL = 2
_MIN_STEP = 1e-4  # guards against a timer that stays due: never re-tick sooner than this
_INBOX_LIMIT = 1000  # frames buffered for a paused member (ZeroMQ's default HWM)


@dataclass(slots=True)
class SimNode:
    """One simulated process: its machine, its fate and its traffic counters."""

    node_id: str
    addr: str
    ml: Memberlist
    up: bool = True
    paused: bool = False
    paused_at: float = 0.0
    wake_at: float = -1.0
    inbox: list[tuple[str, Message]] = field(default_factory=list)
    msgs_out: int = 0
    msgs_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0


@dataclass(frozen=True, slots=True)
class SimEvent:
    """A membership event, stamped with the virtual time and the member that saw it."""

    time: float
    observer: str
    event: MemberEvent


class SimNetwork:
    """N members on a virtual network and clock. See the module docstring."""

    def __init__(
        self,
        config: GossipConfig,
        *,
        seed: int = 0,
        latency: tuple[float, float] = (0.0005, 0.002),
        loss: float = 0.0,
        measure_bytes: bool = False,
        wire: bool = False,
        keep_events: bool = True,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if not 0.0 <= latency[0] <= latency[1]:
            raise ValueError("latency must be (lo, hi) with 0 <= lo <= hi")
        self.config = config
        self.seed = seed
        self.now = 0.0
        self.latency = latency
        self.loss = loss
        self.measure_bytes = measure_bytes or wire
        self.wire = wire  # encode *and* decode every frame: exercises the codec end to end
        self.keep_events = keep_events
        self.nodes: dict[str, SimNode] = {}
        self.events: list[SimEvent] = []
        self.listeners: list[Callable[[SimEvent], None]] = []
        self.dropped = 0
        self.delivered = 0
        self._by_addr: dict[str, SimNode] = {}
        self._rng = random.Random(f"net:{seed}")
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._group: dict[str, int] | None = None

    # ------------------------------------------------------------ membership of the sim
    def add_node(self, node_id: str, *, generation: int = 1, record: Mapping[str, Any] | None = None) -> SimNode:
        """Create a member (not yet joined) at address ``sim://<id>``."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} exists")
        addr = f"sim://{node_id}"
        node = SimNode(node_id, addr, self._machine(node_id, addr, generation))
        self.nodes[node_id] = node
        self._by_addr[addr] = node
        if record is not None:
            self._drive(node, node.ml.update_local_record(self.now, record))
        self._reschedule(node)
        return node

    def join(self, node_id: str, seeds: Iterable[str]) -> None:
        """Make `node_id` join through the members named in `seeds`."""
        node = self.nodes[node_id]
        addrs = [self.nodes[s].addr for s in seeds if s != node_id]
        self._drive(node, node.ml.join(self.now, addrs))

    def bootstrap(self) -> None:
        """Give every member the full membership at once, silently (a converged start)."""
        entries = [n.ml.self_entry() for n in self.nodes.values() if n.up]
        for node in self.nodes.values():
            if node.up:
                node.ml.bootstrap(self.now, entries)
                self._reschedule(node)

    def ml(self, node_id: str) -> Memberlist:
        return self.nodes[node_id].ml

    # ------------------------------------------------------------ faults
    def kill(self, node_id: str) -> None:
        """The process disappears: no more timers, frames to it are lost."""
        node = self.nodes[node_id]
        node.up = False
        node.paused = False
        node.inbox.clear()

    def restart(self, node_id: str, seeds: Iterable[str] | None = None) -> SimNode:
        """Boot a killed member again with a new generation and rejoin through `seeds`."""
        node = self.nodes[node_id]
        old = node.ml
        node.ml = self._machine(node_id, node.addr, old.generation + 1)
        node.up, node.paused, node.wake_at = True, False, -1.0
        node.inbox.clear()
        if old.local_record is not None:
            self._drive(node, node.ml.update_local_record(self.now, old.local_record.body))
        if seeds is None:
            seeds = [n.node_id for n in self.nodes.values() if n.up and not n.paused and n.node_id != node_id][:3]
        self.join(node_id, seeds)
        return node

    def pause(self, node_id: str) -> None:
        """Stop the member like SIGSTOP: it neither processes frames nor runs timers."""
        node = self.nodes[node_id]
        if node.up and not node.paused:
            node.paused = True
            node.paused_at = self.now

    def resume(self, node_id: str) -> None:
        """Continue a paused member: buffered frames first, then its overdue timers."""
        node = self.nodes[node_id]
        if not (node.up and node.paused):
            return
        node.paused = False
        # The real transport sees a pause as a very late loop tick.
        node.ml.note_loop_lag(self.now - node.paused_at)
        inbox, node.inbox = node.inbox, []
        for src, msg in inbox:
            self._dispatch(node, node.ml.receive(self.now, src, msg))
        self._dispatch(node, node.ml.tick(self.now))
        self._collect(node)
        self._reschedule(node)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network; members not named form one more group together."""
        self._group = {}
        for i, group in enumerate(groups):
            for node_id in group:
                self._group[self.nodes[node_id].addr] = i

    def heal(self) -> None:
        self._group = None

    def set_record(self, node_id: str, body: Mapping[str, Any]) -> None:
        node = self.nodes[node_id]
        self._drive(node, node.ml.update_local_record(self.now, body))

    def leave(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self._drive(node, node.ml.leave(self.now))

    def at(self, time: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `time` (e.g. a record change or a fault)."""
        self._push(max(time, self.now), _CALL, action)

    # ------------------------------------------------------------ running
    def run_for(self, duration: float, until: Callable[[], bool] | None = None, check_every: float = 0.05) -> bool:
        return self.run_until(self.now + duration, until, check_every)

    def run_until(
        self, end: float, until: Callable[[], bool] | None = None, check_every: float = 0.05,
    ) -> bool:
        """Advance to virtual time `end`, or until `until()` holds (checked every `check_every`).

        Returns True when `until` was met (or was not given), False on reaching `end` first.
        """
        next_check = self.now
        heap = self._heap
        while True:
            if until is not None and self.now >= next_check:
                if until():
                    return True
                next_check = self.now + check_every
            limit = min(end, next_check) if until is not None else end
            if not heap or heap[0][0] > limit:
                if limit >= end:
                    self.now = max(self.now, end)
                    return until() if until is not None else True
                self.now = limit
                continue
            time, _, kind, payload = heapq.heappop(heap)
            self.now = max(self.now, time)
            if kind == _DELIVER:
                self._deliver(*payload)
            elif kind == _WAKE:
                self._wake(payload, time)
            else:
                payload()

    # ------------------------------------------------------------ queries
    def up_nodes(self) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.up]

    def status(self, observer: str, target: str) -> Status | None:
        info = self.nodes[observer].ml.member(target)
        return None if info is None else info.status

    def view(self, observer: str) -> dict[str, MemberInfo]:
        return {m.node: m for m in self.nodes[observer].ml.members(self.now)}

    def all_see(self, target: str, statuses: Status | Iterable[Status], observers: Iterable[str] | None = None) -> bool:
        """True when every observer (default: every running member but target) holds target in `statuses`."""
        wanted = {statuses} if isinstance(statuses, Status) else set(statuses)
        obs = observers if observers is not None else [n for n in self.up_nodes() if n != target]
        return all(self.status(o, target) in wanted for o in obs)

    def fully_joined(self, expected: int | None = None) -> bool:
        """Every running member counts `expected` live members (default: all running)."""
        up = [n for n in self.nodes.values() if n.up]
        want = len(up) if expected is None else expected
        return all(n.ml.num_live == want for n in up)

    def reset_counters(self) -> None:
        for n in self.nodes.values():
            n.msgs_out = n.msgs_in = n.bytes_out = n.bytes_in = 0

    # ------------------------------------------------------------ internals
    def _machine(self, node_id: str, addr: str, generation: int) -> Memberlist:
        rng = random.Random(f"ml:{self.seed}:{node_id}:{generation}")
        return Memberlist(node_id, addr, config=self.config, generation=generation, rng=rng, now=self.now)

    def _push(self, time: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, kind, payload))

    def _dispatch(self, node: SimNode, outs: list[Outbound]) -> None:
        rng = self._rng
        lo, hi = self.latency
        for addr, msg in outs:
            node.msgs_out += 1
            size = 0
            if self.measure_bytes:
                frame = encode(msg)
                size = len(frame)
                node.bytes_out += size
                if self.wire:
                    msg = decode(frame)
            if self.loss and rng.random() < self.loss:
                self.dropped += 1
                continue
            group = self._group
            if group is not None and group.get(node.addr, -1) != group.get(addr, -1):
                self.dropped += 1
                continue
            self._push(self.now + rng.uniform(lo, hi), _DELIVER, (addr, node.addr, msg, size))

    def _deliver(self, addr: str, src: str, msg: Message, size: int) -> None:
        node = self._by_addr.get(addr)
        if node is None or not node.up:
            self.dropped += 1
            return
        node.msgs_in += 1
        node.bytes_in += size
        if node.paused:
            if len(node.inbox) < _INBOX_LIMIT:
                node.inbox.append((src, msg))
            return
        self.delivered += 1
        self._drive(node, node.ml.receive(self.now, src, msg))

    def _wake(self, node_id: str, time: float) -> None:
        node = self.nodes[node_id]
        if not node.up or node.paused or time != node.wake_at:
            return  # stale: rescheduled, killed or paused since
        self._drive(node, node.ml.tick(self.now))

    def _drive(self, node: SimNode, outs: list[Outbound]) -> None:
        self._dispatch(node, outs)
        self._collect(node)
        self._reschedule(node)

    def _reschedule(self, node: SimNode) -> None:
        due = max(node.ml.next_deadline(), self.now + _MIN_STEP)
        if node.wake_at <= self.now or due < node.wake_at:
            node.wake_at = due
            self._push(due, _WAKE, node.node_id)

    def _collect(self, node: SimNode) -> None:
        events = node.ml.drain_events()
        if not events or not (self.keep_events or self.listeners):
            return
        for ev in events:
            sim_ev = SimEvent(self.now, node.node_id, ev)
            if self.keep_events:
                self.events.append(sim_ev)
            for listener in self.listeners:
                listener(sim_ev)


__all__ = ["SimEvent", "SimNetwork", "SimNode"]
