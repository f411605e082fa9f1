"""A whole simulated run: nodes, a coordinator or gossip peers, the load generator and the
faults on one virtual clock, in one process; its records, node samples and events.

    config = SimConfig(mode="centralized", nodes=[("node-0", kind), ...], policy="affinity-score")
    result = simulate(config, schedule)        # schedule: daemons.loadgen.workload.plan(...)
    result.records                             # one RequestRecord per planned request

The parts (each in its module) are the real rules without their sockets: the node
(node.py over the emulator's batching and latency), the coordinator (coordinator.py:
ClusterBook and decide), the gossip peers (peer.py: Memberlist over the simulated
network, peer_view and peer_decide), the hybrid peers (hybrid.py: gossip peers that refer
cold starts to the coordinator, HybridMode's rules) and the load generator (client.py: its
Recorder).
What is simulated is only time and transport: the wire (wire.py), the costs of the
coordinator's CPU (coordinator.Costs) and of each node agent's loop (agent.AgentCosts).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from daemons.core.messages import Done, Error, Migrate, NodeState, Placement
from daemons.gossip.config import GossipConfig
from daemons.gossip.messages import Status
from daemons.loadgen.recorder import Recorder, RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import peer_rng
from daemons.policy.rebalance import DEFAULT_THRESHOLD
from daemons.rundir import Event, NodeSample
from daemons.sim.agent import AgentCosts
from daemons.sim.client import LOADGEN, SimClient
from daemons.sim.clock import Clock
from daemons.sim.collector import SimCollector
from daemons.sim.coordinator import Ask, CoordinatorSettings, Costs, Peers, SimCoordinator
from daemons.sim.faults import SimFault, schedule_faults
from daemons.sim.hybrid import SimHybridPeer
from daemons.sim.node import Asked, NodeKind, NodeRules, SimNode
from daemons.sim.peer import PeerSettings, Placing, RecordCache, SimPeer, verdict_listener
from daemons.sim.wire import Wire

COORDINATOR = "coordinator"
COLLECTOR = "collector"
REFUSALS = ("no_capacity", "overloaded")  # a peer that cannot take a forwarded request (gossip_mode)


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
        self.records = RecordCache()
        self.peered = config.mode in ("gossip", "hybrid")  # requests enter at gossip peers
        if config.mode in ("centralized", "hybrid"):
            self.wire.add(COORDINATOR)
            hybrid = Peers(self._beat, self._send_map) if config.mode == "hybrid" else None
            self.coordinator = SimCoordinator(self._coordinator_settings(), self.clock, config.costs, self.emit,
                                              self._send_order, hybrid)
        rules = NodeRules(config.max_running, config.priority, config.priority_aging_s)
        for name, kind in config.nodes:
            self.wire.add(name)
            self.nodes[name] = SimNode(name, kind, self.clock, self._publisher(name), config.publish_interval_s,
                                       config.mode, rules, self._link, self._announce, config.agent_costs)
            if self.peered:
                self.peers[name] = self._peer(name)
        client_mode = "gossip" if self.peered else config.mode  # hybrid: the load generator's is gossip's
        self.recorder = Recorder(schedule, config.timeout_s, client_mode, config.retries, config.attempt_timeout_s)
        self.client = SimClient(self.clock, self.recorder, schedule, client_mode,
                                [n.endpoint for n in self.nodes.values()], self._send, self._infer_placed,
                                self._gone)

    def _peer(self, name: str) -> SimPeer:
        c = self.config
        hybrid = c.mode == "hybrid"
        settings = PeerSettings(c.peer_policy if hybrid else c.policy, c.admission, c.queue_limit, c.timeout_s,
                                c.priority, c.priority_aging_s)
        kind = SimHybridPeer if hybrid else SimPeer
        peer = kind(self.nodes[name], settings, self.clock, self.records, self._forward, peer_rng(c.peer_seed, name))
        if isinstance(peer, SimHybridPeer):
            peer.configure(self._refer, self._announce, c.referral_timeout_s)
        return peer

    def _coordinator_settings(self) -> CoordinatorSettings:
        c = self.config
        return CoordinatorSettings(c.policy, 0, queue_limit=c.queue_limit, queue_timeout_s=c.timeout_s,
                                   priority=c.priority, priority_aging_s=c.priority_aging_s, admission=c.admission,
                                   rebalance=c.rebalance, rebalance_threshold=c.rebalance_threshold,
                                   live_migration=c.live_migration,
                                   model_map_s=c.model_map_s if c.mode == "hybrid" else 0.0)

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
        if self.coordinator is not None:
            self.coordinator.start()
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
        stats = {**self._stats(), "cut": cut[0] and not self.client.done, **self._hybrid_stats()}
        return SimResult(self.recorder.records, self.collector.samples, self.events, ended,
                         dict(self.recorder.ignored), time.perf_counter() - started, stats)

    def _stats(self) -> dict[str, Any]:
        net = self.clock.net
        gossip_msgs = sum(n.msgs_out for n in net.nodes.values())
        steps = sum(i.batch.steps for n in self.nodes.values() for i in n.instances.values())
        return {"events": self.clock.events, "gossip_messages": gossip_msgs, "wire_messages": self.wire.messages,
                "decisions": self.coordinator.decisions if self.coordinator else 0,
                "coordinator_busy_s": self.coordinator.busy_s if self.coordinator else 0.0,
                "loads": sum(n.loads for n in self.nodes.values()),
                "evictions": sum(n.evictions for n in self.nodes.values()), "steps_alive_instances": steps,
                "migration_orders": self.coordinator.orders if self.coordinator else 0,
                **{f"migrations_{k}": sum(n.migrations[k] for n in self.nodes.values())
                   for k in ("migrated", "refused", "abandoned", "resumed_here")}}

    def _hybrid_stats(self) -> dict[str, Any]:
        peers = [p for p in self.peers.values() if isinstance(p, SimHybridPeer)]
        if not peers:
            return {}
        return {**{f"decided_{k.replace('-', '_')}": sum(p.paths[k] for p in peers) for k in peers[0].paths},
                "degraded_spells": sum(p.degraded_spells for p in peers)}

    # ----- the request path --------------------------------------------------------------------------
    def _send(self, rec: RequestRecord, to: str) -> None:
        """One attempt of `rec`: to the coordinator (centralized) or entry peer `to` (gossip)."""
        rid = rec.request_id
        if self.coordinator is not None and not self.peered:
            coordinator = self.coordinator
            ask = Ask(rid, self.client.placement_request(rec), 0.0, self._replier(COORDINATOR, COORDINATOR))
            self.wire.send(LOADGEN, COORDINATOR, lambda: coordinator.on_schedule(ask))
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
        asked = self._asked(rec, placement.action, self._replier(node.name, node.endpoint))
        self.wire.send(LOADGEN, node.name, lambda: node.infer(asked))
        if not self.wire.parties[node.name].up:
            self.clock.after(self.config.latency_s, lambda: self.client.link_lost(node.endpoint))

    def _asked(self, rec: RequestRecord, action: str, reply: Callable[[Any], None]) -> Asked:
        return Asked(rec.request_id, rec.model, rec.prompt_tokens, rec.max_new_tokens, action, reply,
                     priority=rec.priority)

    def _replier(self, src: str, source: str) -> Callable[[Any], None]:
        """How `src` answers the load generator (`source`: the endpoint the answer comes through)."""
        client = self.client

        def reply(body: Any) -> None:
            sender = getattr(body, "node", "") or src
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
                       relay, asked.hops, asked.priority, decided_by=asked.decided_by)
        self.wire.send(src, dst, lambda: node.infer(onward))

    # ----- hybrid: referrals, heartbeats and maps between the peers and the coordinator ---------------
    def _refer(self, src: str, ask: Ask) -> bool:
        """Peer `src` refers `ask` to the coordinator; False when its process is gone (the real
        peer's DEALER has no connection then, and its send fails at once)."""
        coordinator = self.coordinator
        if coordinator is None or not self.wire.parties[COORDINATOR].up:
            return False
        answer = ask.reply

        def reply(body: Any) -> None:
            self.wire.send(COORDINATOR, src, lambda: answer(body))

        over = Ask(ask.request_id, ask.request, ask.timeout_s, reply)
        self.wire.send(src, COORDINATOR, lambda: coordinator.on_schedule(over))
        return True

    def _beat(self) -> None:
        for name, peer in self.peers.items():
            if isinstance(peer, SimHybridPeer):
                self.wire.send(COORDINATOR, name, peer.heard)

    def _send_map(self, models: dict[str, list[str]]) -> None:
        for name, peer in self.peers.items():
            if isinstance(peer, SimHybridPeer):
                self.wire.send(COORDINATOR, name, lambda p=peer: p.take_map(models))  # type: ignore[misc]

    # ----- between nodes: live migration ---------------------------------------------------------------
    def _link(self, src: str, dst: str, deliver: Callable[[SimNode], None]) -> None:
        node = self.nodes.get(dst)
        if node is not None:
            self.wire.send(src, dst, lambda: deliver(node))

    def _announce(self, kind: str, node: str, detail: str) -> None:
        """A node's ClusterEvent (its PUB) reaches the collector: a row of events.csv."""
        self.wire.send(node, COLLECTOR, lambda: self.emit(kind, node, detail))

    def _send_order(self, order: Migrate) -> None:
        """The coordinator's Migrate to its source node."""
        self._link(COORDINATOR, order.node, lambda node: node.migrate(order))

    def order_migration(self, source: str, destination: str, reason: str) -> None:
        """An operator's Migrate straight to `source` (the `migrate` fault, cli/experiment/moves.py)."""
        order = Migrate("", source, destination, self.nodes[destination].endpoint, reason)
        self._link(LOADGEN, source, lambda node: node.migrate(order))

    def _publisher(self, name: str) -> Callable[[NodeState], None]:
        def publish(state: NodeState) -> None:
            if self.wire.parties[name].paused:
                return  # the agent is stopped: it publishes again when it continues
            collector, coordinator = self.collector, self.coordinator
            self.wire.send(name, COLLECTOR, lambda: collector.take(state))
            if coordinator is not None:
                self.wire.send(name, COORDINATOR, lambda: coordinator.on_state(state))
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
        if self.coordinator is not None and not self.peered:
            return self.coordinator.gone_nodes() if self.wire.parties[COORDINATOR].reachable else []
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
