"""A simulated gossip-mode peer: the real peer's view, policy and placement loop.

Membership and the gossiped NodeState records are the real `Memberlist` state machine of
each member, run by the simulated network on the shared clock (daemons/sim/clock.py). A
request that enters a peer is placed as `GossipMode.place` places it
(daemons/node/gossip_mode.py): the peer builds its view with the same `peer_view` (its
own state, every member's gossiped record and liveness, its pending placements for
SETTLE_S; itself busy by the request it is placing, as the agent holds every Infer it
received), decides with the same `peer_decide` and the same dice (`peer_rng`), serves it
here or forwards it once; a request no peer can take waits in the same AdmissionQueue and
is offered to the policy again whenever the peer's view changes and at least every
RETRY_S; at most MAX_PLACEMENTS nodes are tried. A forward to a peer whose
process dies is placed again at once (the real peer's connection monitor), and the client
is told with a `Reassigned`.

The policy is the registry's with the spec's affinity (`--affinity learned` ranks by the
estimates the simulated nodes publish in their gossiped records); a peer's own pre-warm
rounds are its node's (daemons/sim/node.py, on `view`).

Sparrow (`gossip_policy = "sparrow"`): a peer whose policy probes sends its `Probe`s and
takes the `ProbeReply`s over the wire (the same one-way latency as the other peer frames),
and runs the policy's own sans-IO `ProbeRace` (the first reply within `timeout_s` wins;
none, and it falls back) on the virtual clock; the placement then goes on as the real
peer's does after its await (`resume`). A probed peer holds the probe as the real one
does (`ProbeHold`): it answers on arrival or at its next published state with a free slot,
and gives up after `hold_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from random import Random
from typing import Any

from daemons.core.errors import SchemaError
from daemons.core.messages import Error, NodeState, Probe, ProbeReply, Progress, Reassigned
from daemons.core.schema import from_dict, to_dict
from daemons.gossip.messages import Status
from daemons.gossip.records import NodeRecord
from daemons.node.config import PROGRESS_EVERY_S
from daemons.node.gossip_mode import MAX_PLACEMENTS, RETRY_S, SentPlacements, peer_decide, peer_view
from daemons.policy import NO_NODES, ClusterView, Decision, NodeView, PlacementRequest, Refusal, get_policy
from daemons.policy.admission import QUEUE_TIMEOUT, AdmissionQueue, QueueLimits
from daemons.policy.capacity import worth_waiting
from daemons.policy.peer import SPARROW
from daemons.policy.sparrow import Move, ProbeHold, ProbeRace, ProbeRound, Sparrow, probe_reply
from daemons.policy.view import node_view
from daemons.sim.clock import Clock
from daemons.sim.node import Asked, SimNode

Member = tuple[NodeState, bool, float | None]  # a member's gossiped state, alive, its record's age (s)
Forwarder = Callable[[str, str, Asked], None]  # (from peer, to peer, the request with its action)
Then = Callable[[Decision | Refusal], None]  # a decision that comes later (after a probe round)
Done = Callable[[Decision | None], None]  # a probe round's outcome: the first answer's decision, or None
PeerLink = Callable[[str, str, Callable[["SimPeer"], None]], None]  # a frame from one peer to another


def _nowhere(src: str, dst: str, deliver: Callable[[SimPeer], None]) -> None:
    """The link of a peer outside a Simulation (a unit test): its frames go nowhere."""


@dataclass(frozen=True)
class PeerSettings:
    policy: str
    admission: str = "queue"
    queue_limit: int = 64
    queue_timeout_s: float = 120.0
    priority: bool = True
    priority_aging_s: float = 5.0
    affinity: str = "static"  # static | learned (daemons/policy/learned.py)


class RecordCache:
    """Gossiped records as NodeStates and NodeViews, made once per version for all peers.

    Every peer holds the same bodies (the owner's `to_dict(state)`), some a version behind:
    the owner's states are remembered by (node, generation, version) when it publishes, so
    no peer parses a body the simulator itself wrote (a body it does not know is parsed, as
    gossip_mode._state_of does), and a member's NodeView without pending placements is the
    same object for every peer that sees that version alive or dead.
    """

    KEEP = 16  # versions per node: peers lag the owner by a few at most

    def __init__(self) -> None:
        self._states: dict[str, dict[tuple[int, int], NodeState]] = {}
        self._views: dict[tuple[str, int, int, bool], NodeView] = {}
        self._keys: dict[int, tuple[int, int]] = {}  # id(state) -> its record key, for view_of
        self._latest: dict[tuple[str, bool], NodeView] = {}  # (node, alive) -> the view view_of made last

    def remember(self, node: str, key: tuple[int, int], state: NodeState) -> None:
        versions = self._states.setdefault(node, {})
        versions[key] = state
        self._keys[id(state)] = key
        if len(versions) > self.KEEP:
            oldest = min(versions)
            gone = versions.pop(oldest)
            self._keys.pop(id(gone), None)
            self._views.pop((node, *oldest, True), None)
            self._views.pop((node, *oldest, False), None)

    def state(self, node: str, record: NodeRecord | None) -> NodeState | None:
        """The NodeState of `node`'s gossiped `record` (None: none, or not a valid one)."""
        if record is None:
            return None
        versions = self._states.get(node)
        if versions is not None:
            known = versions.get((record.gen, record.ver))  # record.key, without the property's call
            if known is not None:
                return known
        try:
            state: NodeState | None = from_dict(NodeState, dict(record.body), f"record of {node}")
        except SchemaError:
            state = None
        if state is not None and state.node != node:
            state = None  # a record speaks for its own member only (gossip_mode._state_of)
        if state is not None:
            self.remember(node, record.key, state)
        return state

    def view_of(self, state: NodeState, alive: bool, pending: list[str]) -> NodeView:
        """node_view, remembered for a known record version without pending placements; a new
        version that looks the same to a policy (a node republishes every second, mostly with
        only its `seq` moved) gets the previous version's object, so a peer's next view patches
        only the nodes that changed (rebuilt_view)."""
        key = self._keys.get(id(state))
        if pending or key is None:
            return node_view(state, alive, pending)
        cache_key = (state.node, key[0], key[1], alive)
        view = self._views.get(cache_key)
        if view is None:
            view = node_view(state, alive, pending)
            last = self._latest.get((state.node, alive))
            if last is not None and last == view:
                view = last
            self._views[cache_key] = self._latest[(state.node, alive)] = view
        return view


@dataclass
class Placing:
    """A request this peer places: the asker, the request, the nodes tried so far."""

    asked: Asked
    request: PlacementRequest
    tried: frozenset[str] = frozenset()
    forwarded_to: str = ""
    first_waited: float | None = None
    decided_by: str = ""  # hybrid: who decided its placement (daemons/policy/hybrid.py PATHS)
    epoch: int = 0  # hybrid: the epoch of the coordinator that decided it (Infer.epoch)


@dataclass
class SimPeer:
    node: SimNode
    settings: PeerSettings
    clock: Clock
    records: RecordCache
    forward: Forwarder
    rng: Random = field(default_factory=Random)
    link: PeerLink = _nowhere  # Sparrow's Probe and ProbeReply to another peer, over the wire

    def __post_init__(self) -> None:
        self.policy = get_policy(self.settings.policy, "gossip", self.settings.affinity)
        # A probed peer answers by Sparrow's rule whatever its own policy (GossipMode.sparrow).
        self.sparrow: Sparrow = self.policy if isinstance(self.policy, Sparrow) else SPARROW
        self._races: dict[str, tuple[ProbeRace, Done]] = {}  # request id -> its probe round in flight
        self._holds: dict[int, tuple[ProbeHold, Probe, str]] = {}  # probes we hold: (hold, probe, asker)
        self._hold_ids = 0
        self.probe_rounds = 0  # for the run's figures: rounds started, and those nobody answered in time
        self.probe_fallbacks = 0
        s = self.settings
        self.queue: AdmissionQueue[Placing] = AdmissionQueue(QueueLimits(s.queue_limit, s.queue_timeout_s),
                                                             s.priority, s.priority_aging_s)
        self._pending = SentPlacements()
        self.forwards: dict[str, Placing] = {}  # request id -> its placing, while a peer serves it
        self._linked: set[str] = set()  # peers this agent has forwarded to (a link open)
        self._retrying = False
        self._waking = False
        self._last_view: ClusterView | None = None  # what view() made last: the next one patches it

    @property
    def name(self) -> str:
        return self.node.name

    def publish(self, state: NodeState) -> None:
        """The node published: gossip it (GossipMode.publish)."""
        net = self.clock.net
        before = net.ml(self.name).local_record
        net.set_record(self.name, to_dict(state))
        after = net.ml(self.name).local_record
        if after is not None and after is not before:  # published now (not staged for later): it is `state`
            self.records.remember(self.name, after.key, state)
        if self._holds:
            self._published(state)
        self.view_changed()

    # ----- the view -----------------------------------------------------------------------------
    def view(self) -> ClusterView:
        """GossipMode.view: our state, every member's gossiped record and liveness, and the
        placements on their way to each node (`pending`)."""
        now = self.clock.now
        me = self.node.snapshot()
        state, rows = self.records.state, self.clock.net.ml(self.name).records(now)
        members = [(s, status == Status.ALIVE, age) for node, status, record, age in rows
                   if (s := state(node, record)) is not None]
        others = ((s, alive) for s, alive, _ in members)
        self._last_view = peer_view(me, others, self.pending(members, now), self.records.view_of, self._last_view)
        return self._last_view

    def pending(self, members: list[Member], now: float) -> Callable[[str], list[str]]:
        """The placements on their way to each node that its record does not show yet: those
        we sent (a hybrid peer adds the coordinator's map's, GossipMode._expected)."""
        sent = self._pending.by_node(now)
        return lambda node: sent.get(node, [])

    def decide(self, rid: str, request: PlacementRequest, then: Then) -> Decision | Refusal | None:
        """GossipMode.decide: the policy's choice, counted as load at its node until gossip shows
        it; None when it probes first (`then` gets it, counted, once the round ends)."""
        def counted(decision: Decision | Refusal) -> Decision | Refusal:
            self.count_pending(decision, request.model)
            return decision

        decision = self.choose(rid, request, lambda later: then(counted(later)))
        return None if decision is None else counted(decision)

    def choose(self, rid: str, request: PlacementRequest, then: Then) -> Decision | Refusal | None:
        """GossipMode.choose: the policy's decision on our view now, after its probe step if it
        has one: None then, and `then(decision)` once the first probed peer answers or the round
        times out (the decision is made on the view of the round's start, as the real peer's)."""
        view = self.view()
        if isinstance(self.policy, Sparrow):
            probes = self.policy.probes(view, request, self.rng, self.name)
            if probes is not None:
                self._probe(rid, request.model, probes, lambda probed: then(self._decision(view, request, probed)))
                return None
        return self._decision(view, request, None)

    def _decision(self, view: ClusterView, request: PlacementRequest, probed: Decision | None) -> Decision | Refusal:
        return peer_decide(self.policy, view, request, self.rng, self.name, self.settings.admission, probed)

    def count_pending(self, decision: Decision | Refusal, model: str) -> None:
        if isinstance(decision, Decision) and decision.node != self.name:
            self._pending.add(decision.node, model, self.clock.now)

    # ----- placing --------------------------------------------------------------------------------
    def arrive(self, placing: Placing) -> None:
        """A request from the load generator: the node holds it while it is placed (its agent's
        task per Infer, server.py), so our own view counts it, as the real peer's does; it is an
        arrival of its model for the node's forecaster (server.py `_accept`). It is placed when
        the agent's loop is free; a forward leaves after place_s (`_send_on`)."""
        self.node.entered(placing.asked)
        self.node.hold(placing.asked.request_id)
        self.node.loop.run(0.0, lambda: self.place(placing))

    def place(self, placing: Placing, decided: Decision | Refusal | None = None) -> None:
        """GossipMode.place: serve here, forward, wait in the queue, or fail after MAX_PLACEMENTS
        (`decided`: the decision that took it out of the queue, acted on as the real peer's
        `admit` returns it, not made twice)."""
        self._place(placing, decided)
        rid = placing.asked.request_id
        if not self.holds(rid):
            self.node.let_go(rid)  # served here (the node counts it now), forwarded or failed

    def holds(self, request_id: str) -> bool:
        """The request still waits at this peer (in its admission queue, or for its probes)."""
        return request_id in self.queue or request_id in self._races

    def _place(self, placing: Placing, decided: Decision | Refusal | None) -> None:
        if not self.node.up:
            return
        while len(placing.tried) < MAX_PLACEMENTS:
            decision, decided = (decided if decided is not None else self._admit(placing)), None
            if decision is None:
                return  # waits in the queue
            if isinstance(decision, Refusal):
                self._fail(placing, decision.code, decision.message)
                return
            if decision.node != self.name:
                placing.tried = placing.tried | {decision.node}
                placing.forwarded_to = decision.node
                self.forwards[placing.asked.request_id] = placing
                self._send_on(placing, decision.node, replace(placing.asked, action=decision.action, hops=1,
                                                              decided_by=placing.decided_by,
                                                              epoch=placing.epoch or placing.asked.epoch))
                return
            if self.node.can_host(placing.request.model):
                self.node.infer(replace(placing.asked, action=decision.action, decided_by=placing.decided_by,
                                        epoch=placing.epoch or placing.asked.epoch))
                return
            placing.tried = placing.tried | {self.name}
        self._fail(placing, "no_capacity", f"no peer could take it (tried {', '.join(sorted(placing.tried))})")

    def _send_on(self, placing: Placing, dst: str, asked: Asked) -> None:
        """Forward to `dst`: it leaves once our loop has spent place_s on it (the Infer taken,
        placed and sent on), and first_link_s more the first time we forward to `dst` in this
        agent's life (GossipMode._link opens the link; that path's first use)."""
        costs = self.node.costs
        cost = costs.place_s + (0.0 if dst in self._linked else costs.first_link_s)
        self._linked.add(dst)
        rid = asked.request_id

        def send() -> None:
            if self.forwards.get(rid) is placing and placing.forwarded_to == dst:  # not placed again meanwhile
                self.forward(self.name, dst, asked)

        self.node.loop.run(cost, send)

    def _admit(self, placing: Placing) -> Decision | Refusal | None:
        """GossipMode.admit: a decision, a refusal, or None while it waits for room."""
        request = replace(placing.request, exclude=placing.tried)
        decided = self.decided(placing, request)
        return None if decided is None else self.settle(placing, request, decided)

    def decided(self, placing: Placing, request: PlacementRequest) -> Decision | Refusal | None:
        """The decision for `placing` (None: it comes later, to `resume`: a probe round's, or the
        hybrid peer's referrals)."""
        return self.decide(placing.asked.request_id, request, lambda later: self.resume(placing, request, later))

    def resume(self, placing: Placing, request: PlacementRequest, decision: Decision | Refusal | None) -> None:
        """A decision that came later, acted on as the real peer's `admit` goes on after its
        await: queued when waiting may cure a refusal, else carried out (None: nothing yet)."""
        if decision is None or not self.node.up:
            return
        settled = self.settle(placing, request, decision)
        if settled is not None:
            self.place(placing, settled)

    def settle(self, placing: Placing, request: PlacementRequest, decision: Decision | Refusal) -> \
            Decision | Refusal | None:
        """The rest of GossipMode.admit: a refusal that waiting may cure puts it in the queue (None)."""
        if isinstance(decision, Decision) or decision.code != NO_NODES:
            return decision
        if not worth_waiting(self.view(), placing.request):
            return decision
        now = self.clock.now
        if placing.first_waited is None:
            placing.first_waited = now
        left = placing.first_waited + self.queue.limits.timeout_s - now
        if left <= 0:
            return Refusal(QUEUE_TIMEOUT, f"waited {self.queue.limits.timeout_s:g} s for capacity for "
                                          f"{request.model}: lower the load, add nodes or raise queue_timeout_s")
        rid = placing.asked.request_id
        refused = self.queue.offer(rid, request.model, placing, now, left, request.priority)
        if refused is not None:
            return Refusal(refused.code, refused.message)
        placing.tried = frozenset()  # once the view changes, every peer may be asked again
        self._beat(placing)
        self._schedule_retry()
        return None

    def _schedule_retry(self) -> None:
        if not self._retrying:
            self._retrying = True
            gen = self.node.gen
            self.clock.after(RETRY_S, lambda: self._retry(gen))

    def _retry(self, gen: int) -> None:
        """RETRY_S passed: offer the queue's heads to the policy again (GossipMode._wait_for_turn)."""
        self._retrying = False
        if self.node.up and gen == self.node.gen:
            self._offer_heads()

    def view_changed(self) -> None:
        """Our view changed (our own state published, a gossiped record, a membership verdict):
        held requests are offered again at once, as the real peer's waiters wake on
        `_view_changed` (GossipMode.publish, _on_member_event), not only every RETRY_S."""
        if self.queue and not self._waking and self.node.up:
            self._waking = True
            gen = self.node.gen
            self.clock.at(self.clock.now, lambda: self._wake(gen))

    def _wake(self, gen: int) -> None:
        self._waking = False
        if self.node.up and gen == self.node.gen:
            self._offer_heads()

    def _offer_heads(self) -> None:
        for out in self.queue.expire(self.clock.now):
            self._fail(out.entry.item, out.code, out.message)
        for head in self.queue.heads():
            while (entry := self.queue.head(head.model, head.priority)) is not None:
                if entry.request_id in self._races:
                    break  # its probe round is under way: the head waits for it (head_decided)
                decision = self.head_decision(entry.item)
                if isinstance(decision, Refusal) or entry.request_id in self._races:
                    break
                self.queue.remove(entry.request_id)
                self.place(entry.item, decision)  # None: placed afresh (a hybrid referral)
        if self.queue:
            self._schedule_retry()

    def head_decision(self, placing: Placing) -> Decision | Refusal | None:
        """GossipMode._wait_for_turn's decision for a queue head (None: place it afresh; or, with
        its round of probes under way, `head_decided` later)."""
        return self.decide(placing.asked.request_id, placing.request, lambda later: self.head_decided(placing, later))

    def head_decided(self, placing: Placing, decision: Decision | Refusal | None) -> None:
        """A queue head's decision after its probes (GossipMode._wait_for_turn after its await):
        a decision takes it out of the queue (None: placed afresh); a refusal leaves it there."""
        rid = placing.asked.request_id
        if isinstance(decision, Refusal) or rid not in self.queue or not self.node.up:
            return
        self.queue.remove(rid)
        self.place(placing, decision)

    def _beat(self, placing: Placing) -> None:
        """A Progress with no tokens to the asker every PROGRESS_EVERY_S while it waits here."""
        rid = placing.asked.request_id
        if not self.holds(rid) or not self.node.up:
            return
        placing.asked.reply(Progress(rid, self.name, 0))
        self.clock.after(PROGRESS_EVERY_S, lambda: self._beat(placing))

    def _fail(self, placing: Placing, code: str, message: str) -> None:
        self.node.let_go(placing.asked.request_id)
        placing.asked.reply(Error(placing.asked.request_id, code, message, self.name))

    # ----- peers that die ----------------------------------------------------------------------------
    def lost(self, peer: str) -> None:
        """The connection to `peer` dropped (its process died): place again what went there."""
        for rid, placing in list(self.forwards.items()):
            if placing.forwarded_to == peer:
                del self.forwards[rid]
                placing.asked.reply(Reassigned(rid, peer, f"connection to {peer} dropped"))
                self.place(placing)

    def answered(self, request_id: str) -> None:
        self.forwards.pop(request_id, None)

    # ----- Sparrow's probes (GossipMode._probe_round, answer_probe) --------------------------------
    def _probe(self, rid: str, model: str, probes: ProbeRound, done: Done) -> None:
        """Send a Probe to each of the round's peers; `done(decision)` with the first answer's
        decision, or None when nobody answered within the round's timeout."""
        race = probes.start(self.clock.now)
        self._races[rid] = (race, done)
        self.probe_rounds += 1
        probe = Probe(rid, model)
        for option in probes.options:
            self.link(self.name, option.node.name, lambda peer: peer.answer_probe(probe, self.name))
        self.clock.at(race.deadline, lambda: self._round_over(rid, race))

    def _round_over(self, rid: str, race: ProbeRace) -> None:
        """The round's timeout: still unanswered (not ended, nor lost with a killed process), it falls back."""
        entry = self._races.get(rid)
        if entry is not None and entry[0] is race:
            del self._races[rid]
            self.probe_fallbacks += 1
            entry[1](race.decision())

    def probe_replied(self, reply: ProbeReply, endpoint: str) -> None:
        """A ProbeReply reached us from the peer at `endpoint`: the first in time ends its round."""
        entry = self._races.get(reply.request_id)
        if entry is None or not entry[0].reply(endpoint, self.clock.now):
            return
        del self._races[reply.request_id]
        entry[1](entry[0].decision())

    def answer_probe(self, probe: Probe, asker: str) -> None:
        """A peer probes us: answer now, or hold the probe until a published state of ours has a
        free slot, for at most the policy's `hold_s` (ProbeHold)."""
        hold = self.sparrow.hold(self.clock.now)
        if self._step(hold, probe, asker, self.node.in_flight) is not Move.WAIT:
            return
        self._hold_ids += 1
        key = self._hold_ids
        self._holds[key] = (hold, probe, asker)
        self.clock.at(hold.deadline, lambda: self._hold_over(key))

    def _step(self, hold: ProbeHold, probe: Probe, asker: str, load: int) -> Move:
        move = hold.step(load, self.clock.now)
        if move is Move.ANSWER:
            reply, endpoint = probe_reply(probe, self.node.snapshot()), self.node.endpoint
            self.link(self.name, asker, lambda peer: peer.probe_replied(reply, endpoint))
        return move

    def _hold_over(self, key: int) -> None:
        """The hold's deadline: answer if a slot is free now, else give up (a killed process's
        holds are gone already)."""
        held = self._holds.pop(key, None)
        if held is not None and self.node.up:
            self._step(*held, self.node.in_flight)

    def _published(self, state: NodeState) -> None:
        """Our state changed: the probes we hold may have a free slot now."""
        for key, held in list(self._holds.items()):
            if self._step(*held, state.in_flight) is not Move.WAIT:
                del self._holds[key]

    def kill(self) -> None:
        self.forwards.clear()
        self._races.clear()
        self._holds.clear()
        self._linked.clear()
        self.queue = AdmissionQueue(self.queue.limits, self.settings.priority, self.settings.priority_aging_s)
        self._pending.clear()
        self._retrying = False
        self._waking = False


def verdict_listener(emit: Callable[[str, str, str], None], now: Callable[[], float]) -> Callable[[Any], None]:
    """Failure verdicts of every peer, as the real peers announce them (gossip_mode.verdict_event)."""
    from daemons.node.gossip_mode import verdict_event

    def on_event(sim_event: Any) -> None:
        verdict = verdict_event(sim_event.event, sim_event.observer, now())
        if verdict is not None:
            emit(verdict.kind, verdict.node, verdict.detail)

    return on_event
