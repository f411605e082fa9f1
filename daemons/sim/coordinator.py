"""The simulated coordinator: the real one's book, decision step and admission queue on
the virtual clock.

It is the decision server (daemons/coordinator/server.py) without its sockets: node
states go into the same `ClusterBook` (ordering, liveness, pending placements), every
Schedule is answered by the same `decide` (daemons/coordinator/decide.py) on the same
view with the same seeded `Random`, and a request no node can take waits in the same
`AdmissionQueue`, offered to the policy again after node states and on every
failure-detector tick. So for one sequence of states and requests both engines place
identically.

Time. The real coordinator is one thread: every state it ingests and every decision it
makes takes CPU time, and requests queue behind it. Here the one virtual CPU runs
server.py's rounds (STATE_BATCH states from an inbox that keeps the newest per node, then
REQUEST_BATCH requests) and each state and decision costs what `Costs` says (measure them
on the target machine with scripts/bench_coordinator.py), so a cluster that asks for more
than that CPU does shows the same growing wait, and the same coalesced states, as the real
one.

Failover (a standby): with a `Pair`, the coordinator is one of a primary/backup pair and
runs the real one's `Failover` (daemons/coordinator/failover.py: Binary Star, witness votes,
epochs): it beats its `CoordinatorState` to its peer every heartbeat, a passive one asks the
nodes to vote once the peer is silent for failover_after_s and takes the next epoch of its
parity when they grant it, and one that is not active answers every Schedule `not_active`.
Its epoch outlives a restart, as the real one's epoch file does.

Live migration: the same `MovePlan` (daemons/coordinator/moveplan.py) as the real `Mover`
decides the rebalancer's moves (`rebalance`) and the room a policy's MIGRATE needs
(`live_migration`); each order goes to its source node over the simulated wire.

Learned affinity and pre-warming: the policy is the registry's with the spec's affinity (a
learned one reads the estimates the simulated nodes publish), and the same `Prewarmer`
(daemons/coordinator/prewarmer.py) as the real server's counts every new Schedule as an
arrival and plans its rounds on the book's view; each `Prewarm` goes to its node over the
simulated wire.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any

from daemons.coordinator.cluster import ClusterBook, Event
from daemons.coordinator.decide import decide
from daemons.coordinator.failover import BinaryStar, Failover, State
from daemons.coordinator.moveplan import MovePlan, order_of
from daemons.coordinator.prewarmer import Prewarmer
from daemons.coordinator.referrals import MIN_GAP_S, MapPublisher
from daemons.coordinator.server import REQUEST_BATCH, STATE_BATCH
from daemons.core.messages import Error, Migrate, NodeState, Placement, Progress, WitnessQuery
from daemons.policy import NO_NODES, ClusterView, Decision, PlacementRequest, Refusal, get_policy
from daemons.policy.admission import AdmissionQueue, QueueLimits, Waiting
from daemons.policy.capacity import worth_waiting
from daemons.policy.hybrid import model_map
from daemons.policy.prewarm import PrewarmOrder, PrewarmSettings
from daemons.policy.rebalance import DEFAULT_THRESHOLD
from daemons.policy.view import SERVE
from daemons.sim.clock import Clock

HELD_BEAT_S = 1.0  # as server.py: a Progress to each asker whose request waits in the queue
HEARTBEAT_S = 1.0  # CoordinatorConfig.heartbeat_s: its CoordinatorState on the events PUB


@dataclass(frozen=True)
class Costs:
    """CPU seconds the coordinator spends per decision and per node state it ingests.

    Measured with `scripts/bench_coordinator.py --quick --no-node --no-curve` on the 2-core
    reference host (2026-12-05, after the generated validators of daemons/core/fastcheck.py):
    24 µs of coordinator CPU per decision, all its threads (sockets, codec and the states of
    100 nodes publishing at 10 Hz included: `coordinator_cpu_us_per_decision`), and 34 µs to
    decode one NodeState of a known catalog (`cost_decode_state_us`). The figures before
    (66 µs, from 1/throughput, and 159 µs, a first-seen catalog's schema check) made the
    simulated coordinator saturate at about a third of the load the real one now takes.
    Re-measured after the slot-by-slot constructors (daemons/core/slotted.py), alternating with
    the code before them (`--rounds 3 --requests 20000`, medians of ten runs each): 22.5 µs per
    decision at load ~3 (23.0 before), 18.3 at load 1-1.9 (19.8 before). The host's load moves
    the figure more than the change did, so 24 is kept (docs/development.md, "Third pass").
    """

    decision_s: float = 24e-6
    state_s: float = 34e-6


@dataclass(frozen=True)
class CoordinatorSettings:
    policy: str
    seed: int = 0
    dead_after_s: float = 3.0
    settle_s: float = 0.1
    max_nodes: int = 10_000
    queue_limit: int = 64
    queue_timeout_s: float = 120.0
    priority: bool = True
    priority_aging_s: float = 5.0
    admission: str = "queue"
    rebalance: bool = False
    rebalance_threshold: int = DEFAULT_THRESHOLD
    live_migration: bool = True
    model_map_s: float = 0.0  # hybrid: its model -> nodes map this often (0: none)
    affinity: str = "static"  # static | learned (daemons/policy/learned.py)
    prewarm: PrewarmSettings = field(default_factory=PrewarmSettings)  # CoordinatorConfig.prewarming


@dataclass(frozen=True)
class Peers:
    """Hybrid: what the coordinator's events PUB carries to the peers, over the wire."""

    beat: Callable[[int], None]  # a CoordinatorState heartbeat saying active, in this epoch
    send_map: Callable[[dict[str, list[str]], int], None]  # a ModelMap's models, and its epoch


@dataclass(frozen=True)
class Pair:
    """One coordinator of a failover pair: its part (CoordinatorConfig's) and its links over the wire."""

    name: str
    role: str  # primary | backup
    peer: str  # the other coordinator's name: its endpoint in the simulation
    failover_after_s: float
    witness_timeout_s: float
    heartbeat_s: float
    beat: Callable[[str, int], None]  # our CoordinatorState (state, epoch) to the peer and the collector
    ask: Callable[[list[str], WitnessQuery, Callable[[str, bool, int], None]], None]  # a vote: nodes, query, answers
    notify: Callable[[list[str], int], None]  # an EpochNotice to these nodes


@dataclass(frozen=True)
class Ask:
    """A Schedule: what the policy looks at, and where the answer goes."""

    request_id: str
    request: PlacementRequest
    timeout_s: float
    reply: Callable[[Any], None]


class SimCoordinator:
    def __init__(self, settings: CoordinatorSettings, clock: Clock, costs: Costs,
                 emit: Callable[[str, str, str], None], send_order: Callable[[Migrate], None] | None = None,
                 peers: Peers | None = None, pair: Pair | None = None,
                 send_prewarm: Callable[[PrewarmOrder], None] | None = None) -> None:
        """`send_order`: a live migration's `Migrate` to its source node (over the wire);
        `peers`: hybrid peers that hear its heartbeats and maps; `pair`: one of a failover pair;
        `send_prewarm`: a pre-warm order to its node (over the wire)."""
        self.settings, self.clock, self.costs = settings, clock, costs
        self.peers = peers
        self.pair = pair
        self.stored_epoch = 0  # the epoch file: the epoch of the latest activation, kept across restarts
        self._emit = emit
        self._send_order = send_order or (lambda order: None)
        self._send_prewarm = send_prewarm or (lambda order: None)
        self.orders = 0
        self.prewarm_orders = 0
        self.up = True
        self.decisions = 0
        self.busy_s = 0.0
        self._boot()

    def _boot(self) -> None:
        s = self.settings
        self.policy = get_policy(s.policy, "centralized", s.affinity)
        self.prewarmer = Prewarmer(s.prewarm, self.clock.now)
        self.rng = Random(s.seed)
        self.book = ClusterBook(s.dead_after_s, s.settle_s, s.max_nodes)
        self.plan = MovePlan(s.rebalance_threshold)
        self.maps = MapPublisher("coordinator", s.model_map_s if self.peers is not None else 0.0)
        self.queue: AdmissionQueue[Ask] = AdmissionQueue(QueueLimits(s.queue_limit, s.queue_timeout_s),
                                                         s.priority, s.priority_aging_s)
        self._inbox: dict[str, NodeState] = {}  # states not read yet, the newest per node
        self._requests: deque[Ask] = deque()
        self._busy = False
        self.paused = False
        self._no_expiry_until = 0.0
        self._life = getattr(self, "_life", 0) + 1
        self.epoch = 0  # the epoch our placements carry (0: no failover pair)
        self.failover: Failover | None = None
        if self.pair is not None:
            p = self.pair
            star = BinaryStar(p.role, p.failover_after_s, self.stored_epoch, self.clock.now)
            self.failover = Failover(star, p.name, p.peer, p.witness_timeout_s, p.heartbeat_s)

    @property
    def active(self) -> bool:
        """Serving: always without a pair; with one, while its Binary Star says so."""
        return self.failover is None or self.failover.star.active

    def start(self) -> None:
        life = self._life
        check_every = min(0.1, self.settings.dead_after_s / 10)
        self._tick(life, check_every)
        self._held_beat(life)
        self._heartbeat(life)

    def kill(self) -> None:
        self.up = False

    def pause(self) -> None:
        """SIGSTOP: its timers stop (the wire holds what is sent to it meanwhile)."""
        self.paused = True

    def resume(self, backlog_s: float = 0.01) -> None:
        """SIGCONT: the states that waited in its socket are read before anyone is judged
        silent (server.py `_state_backlog`): no expiry until they are in."""
        self.paused = False
        self._no_expiry_until = self.clock.now + backlog_s
        self._kick()

    def restart(self) -> None:
        """A new process: an empty book and queue, filled again by the nodes' next states."""
        self.up = True
        self._boot()
        self.start()

    # ----- one CPU ------------------------------------------------------------------------
    # server.py's loop: each round decodes up to STATE_BATCH waiting states (the inbox keeps
    # only the newest per node) and then answers up to REQUEST_BATCH requests; a round costs
    # the CPU time of what it did, and its effects land when it ends.
    def _kick(self) -> None:
        if not self._busy and not self.paused:
            self._busy = True
            self._round(self._life)

    def _round(self, life: int) -> None:
        if not self._alive(life) or self.paused:
            self._busy = False
            return
        states = [self._inbox.pop(next(iter(self._inbox))) for _ in range(min(STATE_BATCH, len(self._inbox)))]
        asks = [self._requests.popleft() for _ in range(min(REQUEST_BATCH, len(self._requests)))]
        if not states and not asks:
            self._busy = False
            return
        cost = len(states) * self.costs.state_s + len(asks) * self.costs.decision_s
        self.busy_s += cost

        def done() -> None:
            if not self._alive(life):
                return
            for state in states:
                self._ingest(state)
            for ask in asks:
                self._schedule(ask)
            self._round(life)

        self.clock.after(cost, done)

    def _alive(self, life: int) -> bool:
        return self.up and life == self._life

    # ----- node states ----------------------------------------------------------------------
    def on_state(self, state: NodeState) -> None:
        self._inbox.pop(state.node, None)  # the newest state of a node replaces one not read yet
        self._inbox[state.node] = state
        self._kick()

    def _ingest(self, state: NodeState) -> None:
        self._events(self.book.ingest(state, self.clock.now))
        self._pump()

    def _events(self, events: list[Event]) -> None:
        for kind, node, detail in events:
            self._emit(kind, node, detail)

    def _tick(self, life: int, every: float) -> None:
        if not self._alive(life):
            return
        if not self.paused and self.clock.now >= self._no_expiry_until:
            self._events(self.book.expire(self.clock.now))
            self._expire_queue()
            self._pump()
        if self.failover is not None and not self.paused:
            self._failover_tick()
        if self.settings.rebalance and not self.paused and self.active:
            for move in self.plan.due(self.book.view(), self.clock.now):
                self._order(order_of(move))
        self._map_if_due()
        if not self.paused and self.active:  # a passive one of a pair orders nothing (server.py)
            for order in self.prewarmer.tick(self.book.view, self.clock.now):
                self.prewarm_orders += 1
                self._send_prewarm(order)
        self.clock.after(every, lambda: self._tick(life, every))

    # ----- hybrid: heartbeats and the model map (server.py's events PUB) -----------------------
    def _heartbeat(self, life: int) -> None:
        if not self._alive(life) or (self.peers is None and self.pair is None):
            return
        if not self.paused:
            self._beat()
        self.clock.after(self.pair.heartbeat_s if self.pair else HEARTBEAT_S, lambda: self._heartbeat(life))

    def _beat(self) -> None:
        if self.peers is not None and self.active:
            self.peers.beat(self.epoch)
        if self.pair is not None and self.failover is not None:
            star = self.failover.star
            self.pair.beat(star.state.value, star.epoch)

    def _map_if_due(self) -> None:
        if self.peers is not None and not self.paused and self.active and self.maps.due(self.clock.now):
            self.maps.sent(self.clock.now)
            self.peers.send_map(model_map(self.book.view()), self.epoch)

    # ----- failover (server.py `_failover_tick`, failover.py `Failover`) ---------------------------
    def _failover_tick(self) -> None:
        assert self.failover is not None and self.pair is not None
        now = self.clock.now
        nodes = list(self.book.alive_endpoints())
        due = self.failover.vote_due(nodes, now)
        if due is not None:
            query, event = due
            self._emit(*event)
            life = self._life
            self.pair.ask(nodes, query, lambda node, granted, epoch: self._voted(life, node, granted, epoch))
        self._decide_vote()

    def _voted(self, life: int, node: str, granted: bool, epoch: int) -> None:
        if self._alive(life) and self.failover is not None:
            self.failover.voted(node, granted, epoch)
            self._decide_vote()

    def _decide_vote(self) -> None:
        assert self.failover is not None
        decided = self.failover.decided(self.clock.now)
        if decided is None:
            return
        changed, event = decided
        if changed is None:
            self._emit(*event)  # failover_refused
        else:
            self._transition(changed, event)

    def on_peer(self, state: str, epoch: int) -> None:
        """The peer's heartbeat (read before any request: server.py drains the peer first)."""
        if not self.up or self.failover is None:
            return
        heard = self.failover.heard(state, epoch, self.clock.now)
        if heard is not None:
            self._transition(*heard)

    def _transition(self, state: State, event: tuple[str, str, str]) -> None:
        """server.py `_on_transition`: an activation's epoch is stored, carried and told to the nodes."""
        assert self.failover is not None and self.pair is not None
        if state is State.ACTIVE:
            self.stored_epoch = self.epoch = self.failover.star.serving_epoch
            self.pair.notify(list(self.book.alive_endpoints()), self.epoch)
        self._emit(*event)
        self._beat()
        if state is not State.ACTIVE:
            self._pump()  # deposed: what it holds is answered not_active

    # ----- live migration -------------------------------------------------------------------
    def _order(self, order: Migrate) -> None:
        self.plan.ordered(order, self.clock.now)
        self.orders += 1
        self._send_order(order)

    def _make_room(self, view: ClusterView, decision: Decision) -> bool:
        """server.py `_make_room`: the live migrations a MIGRATE needs; False if none."""
        moves = self.plan.room(view, decision, self.settings.live_migration)
        for move in moves:
            self._order(order_of(move))
        return bool(moves)

    # ----- requests ------------------------------------------------------------------------
    def on_schedule(self, ask: Ask) -> None:
        self._requests.append(ask)
        self._kick()

    def _schedule(self, ask: Ask) -> None:
        """server.py `_schedule`: refused when not active; queue behind waiting requests of its
        lane, or decide now."""
        if self.failover is not None and not self.failover.star.active:
            ask.reply(Error(ask.request_id, "not_active", self.failover.refusal()))
            return
        req = ask.request
        queued = ask.request_id in self.queue
        if not queued:  # a new arrival (not one asking again while it waits)
            self.prewarmer.arrived(req.model, self.clock.now)
        if queued or self.queue.waits_ahead(req.model, req.priority):
            if self._hold(ask):
                self._pump_lane(req.model, req.priority)
            return
        result = self._decide(req)
        if isinstance(result, Decision):
            ask.reply(self._placed(ask, result))
        elif result.code == NO_NODES and worth_waiting(self.book.view(), req):
            self._hold(ask)
        else:
            ask.reply(Error(ask.request_id, result.code, result.message))

    def _decide(self, request: PlacementRequest) -> Decision | Refusal:
        return decide(self.policy, self.book.view, request, self.rng, self._make_room, self.settings.admission)

    def _placed(self, ask: Ask, result: Decision) -> Placement:
        self.book.placed(result, ask.request.model, self.clock.now)
        self.decisions += 1
        if self.peers is not None and result.action != SERVE:  # a load changes the map: sent soon
            self.maps.placed(result.action)
            life = self._life
            self.clock.after(MIN_GAP_S, lambda: self._map_if_due() if self._alive(life) else None)
        return Placement(ask.request_id, result.node, result.endpoint, result.action, result.est_wait_s,
                         result.reason, self.costs.decision_s, self.epoch)

    def _hold(self, ask: Ask) -> bool:
        """Queue `ask`; False (answered `overloaded`) when its lane is full."""
        req = ask.request
        refused = self.queue.offer(ask.request_id, req.model, ask, self.clock.now, ask.timeout_s, req.priority)
        if refused is not None:
            ask.reply(Error(ask.request_id, refused.code, refused.message))
            return False
        return True

    def _expire_queue(self) -> None:
        for out in self.queue.expire(self.clock.now):
            ask = out.entry.item
            ask.reply(Error(ask.request_id, out.code, out.message))

    def _pump(self) -> None:
        if not self.queue:
            return
        if self.failover is not None and not self.failover.star.active:
            # server.py `_pump`: deposed while holding requests, their askers must ask the active one.
            for entry in self.queue.release_all():
                entry.item.reply(Error(entry.request_id, "not_active", self.failover.refusal()))
            return
        for head in self.queue.heads():
            self._pump_lane(head.model, head.priority)

    def _pump_lane(self, model: str, priority: int) -> None:
        while (head := self.queue.head(model, priority)) is not None:
            result = self._decide(head.item.request)
            if isinstance(result, Refusal) and result.code == NO_NODES:
                return
            self.queue.remove(head.request_id, placed=isinstance(result, Decision))
            self._answer(head, result)

    def _answer(self, head: Waiting[Ask], result: Decision | Refusal) -> None:
        ask = head.item
        if isinstance(result, Decision):
            ask.reply(self._placed(ask, result))
        else:
            ask.reply(Error(ask.request_id, result.code, result.message))

    def _held_beat(self, life: int) -> None:
        if not self._alive(life):
            return
        for entry in [] if self.paused else self.queue.waiting():
            entry.item.reply(Progress(entry.request_id, "coordinator", 0))
        self.clock.after(HELD_BEAT_S, lambda: self._held_beat(life))

    # ----- what the load generator asks ---------------------------------------------------------
    def gone_nodes(self) -> list[tuple[str, str]]:
        """(node, endpoint) of every node this coordinator holds dead (its status reply)."""
        return [(name, r.state.endpoint) for name, r in self.book.records.items() if not r.alive]

