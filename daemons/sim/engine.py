"""A whole simulated run: nodes, a coordinator or gossip peers, the load generator and the
faults on one virtual clock, in one process; its records, node samples and events.

    config = SimConfig(mode="centralized", nodes=[("node-0", kind), ...], policy="affinity-score")
    result = simulate(config, schedule)        # schedule: daemons.loadgen.workload.plan(...)
    result.records                             # one RequestRecord per planned request

The parts (each in its module) are the real rules without their sockets: the node
(node.py over the emulator's batching and latency), the coordinator (coordinator.py:
ClusterBook and decide), the gossip peers (peer.py: Memberlist over the simulated
network, peer_view and peer_decide, Sparrow's probes over the wire), the hybrid peers
(hybrid.py: gossip peers that refer cold starts to the coordinator, HybridMode's rules)
and the load generator (client.py: its Recorder).
What is simulated is only time and transport: the wire (wire.py), the costs of the
coordinator's CPU (coordinator.Costs) and of each node agent's loop (agent.AgentCosts).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from daemons.coordinator.config import CoordinatorConfig
from daemons.core.messages import Done, Error, Migrate, NodeState, Placement, WitnessQuery, WitnessVote
from daemons.gossip.config import GossipConfig
from daemons.gossip.messages import Status
from daemons.loadgen.config import LoadgenConfig
from daemons.loadgen.coordinators import CoordinatorSet
from daemons.loadgen.recorder import Recorder, RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import peer_rng
from daemons.policy.prewarm import PrewarmOrder, PrewarmSettings, order_message
from daemons.policy.rebalance import DEFAULT_THRESHOLD
from daemons.rundir import Event, NodeSample
from daemons.sim.agent import AgentCosts
from daemons.sim.client import LOADGEN, SimClient
from daemons.sim.clock import Clock
from daemons.sim.collector import SimCollector
from daemons.sim.coordinator import Ask, CoordinatorSettings, Costs, Pair, Peers, SimCoordinator
from daemons.sim.faults import SimFault, schedule_faults
from daemons.sim.hybrid import SimHybridPeer
from daemons.sim.node import Asked, NodeKind, NodeRules, SimNode
from daemons.sim.peer import PeerSettings, Placing, RecordCache, SimPeer, verdict_listener
from daemons.sim.wire import Wire

COORDINATOR = "coordinator"
STANDBY = "standby"  # the backup of a failover pair (cli/experiment/cluster.py names it so)
COLLECTOR = "collector"
REFUSALS = ("no_capacity", "overloaded")  # a peer that cannot take a forwarded request (gossip_mode)
_LOADGEN: dict[str, Any] = {f.name: f.default for f in fields(LoadgenConfig)}  # its defaults (a slotted dataclass)


@dataclass(frozen=True)
class SimConfig:
    mode: str  # centralized | gossip | hybrid
    nodes: list[tuple[str, NodeKind]]
    policy: str = "affinity-score"  # the coordinator's, or the peers' in gossip mode
    peer_policy: str = "power-of-d"  # hybrid: the peers' (`policy` is the coordinator's)
    referral_timeout_s: float = NodeConfig.referral_timeout_s  # hybrid: the peers' (NodeConfig)
    model_map_s: float = 1.0  # hybrid: the coordinator's map (cli/experiment/cluster.py MODEL_MAP_S)
    timeout_s: float = 120.0
    retries: int = 2
    attempt_timeout_s: float = 10.0
    queue_limit: int = 64
    priority: bool = True
    priority_aging_s: float = 5.0
    admission: str = "queue"
    gossip_preset: str = "lan"
    latency_s: float = 0.0005  # one way, between any two processes
    costs: Costs = field(default_factory=Costs)
    agent_costs: AgentCosts = field(default_factory=AgentCosts)  # each node agent's loop (daemons/sim/agent.py)
    faults: tuple[SimFault, ...] = ()
    seed: int = 0  # the simulated network's (latencies) and memberlists' randomness
    # The peers' placement randomness: the nodes' `[node] seed` (the experiment leaves it at its
    # default), drawn as the real peers draw it (gossip_mode.peer_rng).
    peer_seed: int = NodeConfig.seed
    publish_interval_s: float = 1.0
    silent_after_s: float = 3.0  # the collector's silence detector
    sample_every_s: float = 1.0  # nodes.csv rows, per node (as the real collector)
    coordinator_silent_s: float = 2.5  # the collector's coordinator silence detector
    max_running: int = 0  # the node's slot queue: per model at once (0: no limit)
    rebalance: bool = False  # centralized: the coordinator's periodic rebalancer
    rebalance_threshold: int = DEFAULT_THRESHOLD
    live_migration: bool = True  # centralized: a policy's MIGRATE is carried out
    standby: bool = False  # centralized, hybrid: a backup coordinator (`standby`) beside the primary
    failover_after_s: float = CoordinatorConfig.failover_after_s  # the pair's (CoordinatorConfig)
    witness_timeout_s: float = CoordinatorConfig.witness_timeout_s
    heartbeat_s: float = CoordinatorConfig.heartbeat_s
    # The load generator's coordinator rules (LoadgenConfig): an unplaced request is asked again
    # (of the other coordinator, with a standby) after this long, this many times at most.
    coordinator_timeout_s: float = _LOADGEN["coordinator_timeout_s"]
    coordinator_retries: int = _LOADGEN["coordinator_retries"]
    affinity: str = "static"  # static | learned: the coordinator's and the peers' (daemons/policy/learned.py)
    prewarm: PrewarmSettings = field(default_factory=PrewarmSettings)  # the coordinator's, the peers' and nodes'


@dataclass
class SimResult:
    records: list[RequestRecord]
    samples: list[NodeSample]
    events: list[Event]
    ended_s: float
    ignored: dict[str, int]
    wall_s: float
    stats: dict[str, Any]


class Simulation:
    def __init__(self, config: SimConfig, schedule: list[PlannedRequest]) -> None:
        self.config = config
        gossip = GossipConfig.preset(config.gossip_preset)
        lat = config.latency_s
        self.clock = Clock(gossip, config.seed, (lat * 0.5, lat * 1.5))
        self.wire = Wire(self.clock, lat)
        self.events: list[Event] = []
        self.coordinator_silent = False  # the collector has reported the coordinator silent
        self.wire.add(LOADGEN)
        self.wire.add(COLLECTOR)
        self.collector = SimCollector(self.clock, self.emit, config.silent_after_s, config.sample_every_s)
        self.nodes: dict[str, SimNode] = {}
        self.peers: dict[str, SimPeer] = {}
        self.coordinator: SimCoordinator | None = None
        self.coordinators: dict[str, SimCoordinator] = {}  # by name: the coordinator, and the standby
        self.records = RecordCache()
        self.peered = config.mode in ("gossip", "hybrid")  # requests enter at gossip peers
        if config.mode in ("centralized", "hybrid"):
            pair = ((COORDINATOR, "primary", STANDBY), (STANDBY, "backup", COORDINATOR)) if config.standby else ()
            for name, role, peer in pair or ((COORDINATOR, "", ""),):
                self.wire.add(name)
                hybrid = Peers(self._beat(name), self._send_map(name)) if config.mode == "hybrid" else None
                self.coordinators[name] = SimCoordinator(
                    self._coordinator_settings(), self.clock, config.costs, self.emit, self._send_order(name),
                    hybrid, self._pair(name, role, peer) if role else None, self._send_prewarm(name))
            self.coordinator = self.coordinators[COORDINATOR]
        rules = NodeRules(config.max_running, config.priority, config.priority_aging_s, config.prewarm)
        for name, kind in config.nodes:
            self.wire.add(name)
            self.nodes[name] = SimNode(name, kind, self.clock, self._publisher(name), config.publish_interval_s,
                                       config.mode, rules, self._link, self._announce, config.agent_costs)
            if self.peered:
                self.peers[name] = self._peer(name)
                self.nodes[name].peer_view = self.peers[name].view  # its own pre-warm rounds
        client_mode = "gossip" if self.peered else config.mode  # hybrid: the load generator's is gossip's
        # As the real sender (sender.py): in centralized mode, the coordinators it may ask.
        asks = CoordinatorSet(tuple(self.coordinators)) if client_mode == "centralized" else None
        self.recorder = Recorder(schedule, config.timeout_s, client_mode, config.retries, config.attempt_timeout_s,
                                 asks, config.coordinator_timeout_s, config.coordinator_retries)
        self.client = SimClient(self.clock, self.recorder, schedule, client_mode,
                                [n.endpoint for n in self.nodes.values()], self._send, self._infer_placed,
                                self._gone)

    def _peer(self, name: str) -> SimPeer:
        c = self.config
        hybrid = c.mode == "hybrid"
        settings = PeerSettings(c.peer_policy if hybrid else c.policy, c.admission, c.queue_limit, c.timeout_s,
                                c.priority, c.priority_aging_s, c.affinity)
        kind = SimHybridPeer if hybrid else SimPeer
        peer = kind(self.nodes[name], settings, self.clock, self.records, self._forward, peer_rng(c.peer_seed, name),
                    self._peer_link)
        if isinstance(peer, SimHybridPeer):
            peer.configure(self._refer, self._announce, c.referral_timeout_s, tuple(self.coordinators))
        return peer

    def _pair(self, name: str, role: str, peer: str) -> Pair:
        c = self.config
        return Pair(name, role, peer, c.failover_after_s, c.witness_timeout_s, c.heartbeat_s,
                    self._coordinator_beat(name, peer), self._witnesses(name, peer), self._epoch_notice(name))

    def _coordinator_settings(self) -> CoordinatorSettings:
        c = self.config
        return CoordinatorSettings(c.policy, 0, queue_limit=c.queue_limit, queue_timeout_s=c.timeout_s,
                                   priority=c.priority, priority_aging_s=c.priority_aging_s, admission=c.admission,
                                   rebalance=c.rebalance, rebalance_threshold=c.rebalance_threshold,
                                   live_migration=c.live_migration,
                                   model_map_s=c.model_map_s if c.mode == "hybrid" else 0.0,
                                   affinity=c.affinity, prewarm=c.prewarm)

    def emit(self, kind: str, target: str, detail: str) -> None:
        """One row of events.csv, at the virtual time."""
        self.events.append(Event(round(self.clock.now, 3), kind, target, detail))

    # ----- running ------------------------------------------------------------------------------
    def run(self, wall_limit_s: float = 0.0, cpu_limit: bool = False) -> SimResult:
        """Run to the end (every request decided); with `wall_limit_s` > 0, stop once that much wall
        time (`cpu_limit`: this process's CPU time) has passed (the requests without an outcome
        then end `cancelled`; `stats["cut"]`)."""
        started = time.perf_counter()
        clock = time.process_time if cpu_limit else time.perf_counter
        budget_from = clock()
        net = self.clock.net
        if self.peered:
            for name, node in self.nodes.items():
                net.add_node(name)
                self.peers[name].publish(node.snapshot())
            net.bootstrap()  # a converged cluster at t = 0, as the real run starts once every peer is up
            net.listeners.append(verdict_listener(self.emit, lambda: self.clock.now))
            net.listeners.append(self._member_event)
        for coordinator in self.coordinators.values():
            coordinator.start()
        for node in self.nodes.values():
            node.start()
        self.collector.start()
        schedule_faults(self, list(self.config.faults))
        self.client.start()
        cut = [False]

        def over() -> bool:
            cut[0] = wall_limit_s > 0 and clock() - budget_from > wall_limit_s
            return self.client.done or cut[0]

        net.run_until(_horizon(self), until=over, check_every=1.0)
        ended = self.clock.now
        self.recorder.cancel(ended, "the simulation ended")
        stats = {**self._stats(), "cut": cut[0] and not self.client.done, **self._hybrid_stats(), **self._probe_stats()}
        return SimResult(self.recorder.records, self.collector.samples, self.events, ended,
                         dict(self.recorder.ignored), time.perf_counter() - started, stats)

    def _stats(self) -> dict[str, Any]:
        net = self.clock.net
        gossip_msgs = sum(n.msgs_out for n in net.nodes.values())
        steps = sum(i.batch.steps for n in self.nodes.values() for i in n.instances.values())
        return {"events": self.clock.events, "gossip_messages": gossip_msgs, "wire_messages": self.wire.messages,
                "decisions": sum(c.decisions for c in self.coordinators.values()),
                "coordinator_busy_s": sum(c.busy_s for c in self.coordinators.values()),
                "loads": sum(n.loads for n in self.nodes.values()),
                "evictions": sum(n.evictions for n in self.nodes.values()), "steps_alive_instances": steps,
                "migration_orders": sum(c.orders for c in self.coordinators.values()),
                "prewarm_orders": sum(c.prewarm_orders for c in self.coordinators.values()),
                "prewarms": sum(n.prewarms for n in self.nodes.values()),
                **{f"migrations_{k}": sum(n.migrations[k] for n in self.nodes.values())
                   for k in ("migrated", "refused", "abandoned", "resumed_here")}}

    def _hybrid_stats(self) -> dict[str, Any]:
        peers = [p for p in self.peers.values() if isinstance(p, SimHybridPeer)]
        if not peers:
            return {}
        return {**{f"decided_{k.replace('-', '_')}": sum(p.paths[k] for p in peers) for k in peers[0].paths},
                "degraded_spells": sum(p.degraded_spells for p in peers)}

    def _probe_stats(self) -> dict[str, Any]:
        """Sparrow's probe rounds, and those that fell back (nobody answered in time)."""
        rounds = sum(p.probe_rounds for p in self.peers.values())
        if not rounds:
            return {}
        return {"probe_rounds": rounds, "probe_fallbacks": sum(p.probe_fallbacks for p in self.peers.values())}

    # ----- the request path --------------------------------------------------------------------------
    def _send(self, rec: RequestRecord, to: str) -> None:
        """One attempt of `rec`: to coordinator `to` (centralized) or entry peer `to` (gossip)."""
        rid = rec.request_id
        if self.coordinators and not self.peered:
            coordinator = self.coordinators[to]
            ask = Ask(rid, self.client.placement_request(rec), 0.0, self._replier(to, to, relayed=False))
            self.wire.send(LOADGEN, to, lambda: coordinator.on_schedule(ask))
            return
        entry = to.removeprefix("sim://")
        peer = self.peers[entry]
        asked = self._asked(rec, "", self._replier(entry, to))
        placing = Placing(asked, self.client.placement_request(rec))
        self.wire.send(LOADGEN, entry, lambda: peer.arrive(placing))

    def _infer_placed(self, rec: RequestRecord, placement: Placement) -> None:
        """Centralized: the coordinator answered; the request goes to the node it names."""
        node = self.nodes.get(placement.node)
        if node is None:
            return
        asked = self._asked(rec, placement.action, self._replier(node.name, node.endpoint), placement.epoch)

        def at_node() -> None:
            node.entered(asked)
            node.infer(asked)

        self.wire.send(LOADGEN, node.name, at_node)
        if not self.wire.parties[node.name].up:
            self.clock.after(self.config.latency_s, lambda: self.client.link_lost(node.endpoint))

    def _asked(self, rec: RequestRecord, action: str, reply: Callable[[Any], None], epoch: int = 0) -> Asked:
        return Asked(rec.request_id, rec.model, rec.prompt_tokens, rec.max_new_tokens, action, reply,
                     priority=rec.priority, epoch=epoch)

    def _replier(self, src: str, source: str, relayed: bool = True) -> Callable[[Any], None]:
        """How `src` answers the load generator (`source`: the endpoint the answer comes through;
        `relayed`: a node's answers name the node that wrote them, a coordinator's are its own)."""
        client = self.client

        def reply(body: Any) -> None:
            sender = (getattr(body, "node", "") if relayed else "") or src
            self.wire.send(src, LOADGEN, lambda: client.reply(body, sender, source))

        return reply

    def _forward(self, src: str, dst: str, asked: Asked) -> None:
        """Gossip: peer `src` forwards `asked` to `dst`; the answers come back through `src`."""
        peer, node = self.peers[src], self.nodes[dst]
        back = asked.reply

        def relay(body: Any) -> None:
            def at_src() -> None:
                if isinstance(body, Error) and body.code in REFUSALS:
                    placing = peer.forwards.pop(asked.request_id, None)
                    if placing is not None:
                        peer.place(placing)  # our view was stale: place it again elsewhere
                    return
                if isinstance(body, Done | Error):
                    peer.answered(asked.request_id)
                back(body)
            # the entry agent's loop relays it (relay_s), after what it is busy with
            self.wire.send(dst, src, lambda: peer.node.loop.run(self.config.agent_costs.relay_s, at_src))

        onward = Asked(asked.request_id, asked.model, asked.prompt_tokens, asked.max_new_tokens, asked.action,
                       relay, asked.hops, asked.priority, decided_by=asked.decided_by, epoch=asked.epoch)
        self.wire.send(src, dst, lambda: node.infer(onward))

    def _peer_link(self, src: str, dst: str, deliver: Callable[[SimPeer], None]) -> None:
        """A frame from peer `src` to peer `dst` (Sparrow's Probe and ProbeReply, the real peers'
        DEALER to the other's node ROUTER), over the wire."""
        peer = self.peers.get(dst)
        if peer is not None:
            self.wire.send(src, dst, lambda: deliver(peer))

    # ----- hybrid: referrals, heartbeats and maps between the peers and the coordinator ---------------
    def _refer(self, src: str, to: str, ask: Ask) -> bool:
        """Peer `src` refers `ask` to coordinator `to`; False when its process is gone (the real
        peer's DEALER has no connection then, and its send fails at once)."""
        coordinator = self.coordinators.get(to)
        if coordinator is None or not self.wire.parties[to].up:
            return False
        answer = ask.reply

        def reply(body: Any) -> None:
            self.wire.send(to, src, lambda: answer(body))

        over = Ask(ask.request_id, ask.request, ask.timeout_s, reply)
        self.wire.send(src, to, lambda: coordinator.on_schedule(over))
        return True

    def _beat(self, name: str) -> Callable[[int], None]:
        """Coordinator `name`'s heartbeat (saying active) on its events PUB, to every hybrid peer."""
        def beat(epoch: int) -> None:
            for peer_name, peer in self.peers.items():
                if isinstance(peer, SimHybridPeer):
                    self.wire.send(name, peer_name, lambda p=peer: p.coordinator_active(name, epoch))  # type: ignore[misc]
        return beat

    def _send_map(self, name: str) -> Callable[[dict[str, list[str]], int], None]:
        def send(models: dict[str, list[str]], epoch: int) -> None:
            for peer_name, peer in self.peers.items():
                if isinstance(peer, SimHybridPeer):
                    self.wire.send(name, peer_name,
                                   lambda p=peer: p.take_map(name, epoch, models))  # type: ignore[misc]
        return send

    # ----- a failover pair: heartbeats, witness votes, epoch notices (over the wire) -------------------
    def _coordinator_beat(self, name: str, peer: str) -> Callable[[str, int], None]:
        """`name`'s CoordinatorState on its events PUB: its peer hears it (the collector's
        silence rule is in faults.py)."""
        def beat(state: str, epoch: int) -> None:
            other = self.coordinators[peer]
            self.wire.send(name, peer, lambda: other.on_peer(state, epoch))
        return beat

    def _witnesses(self, name: str, peer: str) -> Callable[[list[str], WitnessQuery, Callable[[str, bool, int], None]],
                                                            None]:
        """`name` asks these nodes whether they cannot reach `peer` either (witnesses.py)."""
        def ask(nodes: list[str], query: WitnessQuery, answer: Callable[[str, bool, int], None]) -> None:
            def vote(body: WitnessVote) -> None:
                self.wire.send(body.node, name, lambda: answer(body.node, body.granted, body.epoch))

            for node_name in nodes:
                node = self.nodes.get(node_name)
                if node is not None:
                    self.wire.send(name, node_name,
                                   lambda n=node: n.witness(query, self._prober(n.name, peer), vote))  # type: ignore[misc]
        return ask

    def _prober(self, node: str, coordinator: str) -> Callable[[Callable[[], None]], None]:
        """The node's StatusRequest to `coordinator`: answered (one round trip) if its process runs."""
        def probe(answered: Callable[[], None]) -> None:
            def at_coordinator() -> None:
                if self.coordinators[coordinator].up:
                    self.wire.send(coordinator, node, answered)
            self.wire.send(node, coordinator, at_coordinator)
        return probe

    def _epoch_notice(self, name: str) -> Callable[[list[str], int], None]:
        def notify(nodes: list[str], epoch: int) -> None:
            for node_name in nodes:
                node = self.nodes.get(node_name)
                if node is not None:
                    self.wire.send(name, node_name, lambda n=node: n.epoch_notice(epoch))  # type: ignore[misc]
        return notify

    # ----- between nodes: live migration ---------------------------------------------------------------
    def _link(self, src: str, dst: str, deliver: Callable[[SimNode], None]) -> None:
        node = self.nodes.get(dst)
        if node is not None:
            self.wire.send(src, dst, lambda: deliver(node))

    def _announce(self, kind: str, node: str, detail: str) -> None:
        """A node's ClusterEvent (its PUB) reaches the collector: a row of events.csv."""
        self.wire.send(node, COLLECTOR, lambda: self.emit(kind, node, detail))

    def _send_order(self, name: str) -> Callable[[Migrate], None]:
        """Coordinator `name`'s Migrate to its source node."""
        def send(order: Migrate) -> None:
            self._link(name, order.node, lambda node: node.migrate(order))
        return send

    def _send_prewarm(self, name: str) -> Callable[[PrewarmOrder], None]:
        """Coordinator `name`'s Prewarm to its node."""
        def send(order: PrewarmOrder) -> None:
            message = order_message(order)
            self._link(name, order.node, lambda node: node.prewarm(message, name))
        return send

    def order_migration(self, source: str, destination: str, reason: str) -> None:
        """An operator's Migrate straight to `source` (the `migrate` fault, cli/experiment/moves.py)."""
        order = Migrate("", source, destination, self.nodes[destination].endpoint, reason)
        self._link(LOADGEN, source, lambda node: node.migrate(order))

    def _publisher(self, name: str) -> Callable[[NodeState], None]:
        def publish(state: NodeState) -> None:
            if self.wire.parties[name].paused:
                return  # the agent is stopped: it publishes again when it continues
            collector = self.collector
            self.wire.send(name, COLLECTOR, lambda: collector.take(state))
            for to, coordinator in self.coordinators.items():  # the node's PUB: every coordinator's SUB
                self.wire.send(name, to, lambda c=coordinator: c.on_state(state))  # type: ignore[misc]
            if name in self.peers:
                self.peers[name].publish(state)
        return publish

    def _member_event(self, sim_event: Any) -> None:
        """A peer's memberlist changed its view (a record, a verdict): its held requests may fit."""
        peer = self.peers.get(sim_event.observer)
        if peer is not None:
            peer.view_changed()

    def _gone(self) -> list[tuple[str, str]]:
        """Who the load generator hears is gone: the coordinator's dead nodes, or an entry peer's."""
        if self.coordinators and not self.peered:  # the sender asks the coordinator it follows
            asked = self.recorder.coordinators.active if self.recorder.coordinators else COORDINATOR
            return self.coordinators[asked].gone_nodes() if self.wire.parties[asked].reachable else []
        for name in self.peers:
            if self.wire.parties[name].reachable:
                members = self.clock.net.ml(name).members(self.clock.now)
                return [(m.node, self.nodes[m.node].endpoint) for m in members
                        if m.status in (Status.DEAD, Status.LEFT) and m.node in self.nodes]
        return []


def _horizon(sim: Simulation) -> float:
    last = max((r.scheduled_s for r in sim.recorder.records), default=0.0)
    return last + sim.config.timeout_s + 1.0


def simulate(config: SimConfig, schedule: list[PlannedRequest], wall_limit_s: float = 0.0,
             cpu_limit: bool = False) -> SimResult:
    with fewer_collections():
        return Simulation(config, schedule).run(wall_limit_s, cpu_limit)


# Young-generation threshold while a simulation runs (CPython's default is 700).
SIM_GC_THRESHOLD = 50_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often, for the duration of one simulation.

    A large simulated cluster holds millions of long-lived objects (every node's state,
    view and queued event), and CPython's default thresholds start a collection every 700
    allocations, each of which walks them again: at 3,000 nodes that was nearly half the
    CPU time (scripts/bench_sim.py, docs/simulation.md). Reference counting still frees
    everything acyclic at once; only the cycle hunt is spaced out. The previous thresholds
    come back afterwards, since the simulator may run inside a longer-lived process.
    """
    before = gc.get_threshold()
    gc.set_threshold(SIM_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
