"""A simulated node agent: its instances, memory ledger, loads, evictions and batches.

The node's rules come from the same places as the real agent's: the catalog (footprints
and load times from the profiles, daemons/node/catalog.py), the eviction rule
(daemons/node/eviction.py: idle ready instances, least recently used first), the label of
a served request (daemons/node/actions.py), the instance's batching and latency
(daemons/sim/batch.py over the emulator's rules) and the `NodeState` it publishes (the
same message the coordinator's book and gossip peers read). What is left here is the
order of events the asyncio agent expresses with awaits: a request for a model that is not
loaded starts its load (making room first, or waiting until an instance goes idle), waits
for it, takes a slot of the node's slot queue (`max_running`: daemons/node/slots.py
`SlotRule`, the agent's rule), then joins the instance's batch.

Live migration (daemons/node/server.py and the rules of daemons/node/migration.py): a
`Migrate` is refused or accepted by `refusal`, the request chosen by `pick`; the source sends
prefill rounds to the destination while it keeps decoding, `Rounds` says when to switch,
the batch stops the request at its next token (batch.py `stop`), the client hears a
`Handover`, the destination serves the rest (a `Resume`) and its replies come back through
the source, which checks them with `Relay`, gives up after SILENCE_S without a word (before
the switch the request stays; after it, it resumes here), and ends with the `migrated` event
and a Done carrying the migration's figures. Modelled, not copied: a migration round is one
prefill of the context on the destination's batch (the agent's one-token generate call).
The longest client-visible gap is the one at the switch (the destination's first token);
later tokens are not timed one by one.

Learned affinity and pre-warming: the node feeds the agent's own `NodeLearning`
(daemons/node/learning.py) as the agent does, on the virtual clock: every request entering
it (`entered`), every served request's `Done.timings` (the agent's figures: load_wait_s,
ttft_s, total_s, slot_wait_s), every completed load; it publishes `estimates()` in its
state, ranks eviction victims by `victim_key`, takes pre-warm orders by `take_prewarm`,
plans its own as a gossip or hybrid peer by `peer_round`, and writes the agent's events
through `LoadWatcher` and the ledger (`prewarm`, `prewarm_hit`, `prewarm_unused`, `evict`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemons.core.messages import (
    CatalogEntry,
    Done,
    Error,
    FirstToken,
    GpuState,
    Handover,
    Migrate,
    ModelState,
    NodeState,
    Prewarm,
    Progress,
    ResumeReady,
    StreamToken,
    WitnessQuery,
    WitnessVote,
)
from daemons.emulator.daemon import EmulatorConfig, resolve
from daemons.node.actions import served_action
from daemons.node.catalog import Catalog
from daemons.node.config import MIN_PUBLISH_GAP_S, PROGRESS_EVERY_S
from daemons.node.eviction import fits_after_eviction, lru_idle
from daemons.node.fencing import EpochFence, probe_window, witness_vote
from daemons.node.learning import LoadWatcher, NodeLearning
from daemons.node.migration import (
    MAX_RESUME_ROUNDS,
    SILENCE_S,
    Relay,
    Rounds,
    Step,
    Verdict,
    detail,
    pick,
    refusal,
)
from daemons.node.slots import SlotRule, Ticket
from daemons.policy.prewarm import TICK_S, PrewarmSettings, order_message
from daemons.policy.priority import DEFAULT_AGING_S
from daemons.policy.view import ClusterView
from daemons.sim.agent import AgentCosts, AgentLoop
from daemons.sim.batch import Seq, SimBatch
from daemons.sim.clock import Clock

SIM_SCHEMES = ("sim://",)  # a simulated node's endpoint

Reply = Callable[[Any], None]  # a message body back to whoever asked
# (from node, to node, what happens at the destination node): a frame between two nodes
Link = Callable[[str, str, Callable[["SimNode"], None]], None]
Announce = Callable[[str, str, str], None]  # a node's ClusterEvent (kind, node, detail) for events.csv


@dataclass(frozen=True)
class NodeRules:
    """The agent's settings the simulated node follows: its slot queue's and its pre-warming
    (NodeConfig, NodeConfig.prewarming)."""

    max_running: int = 0
    priority: bool = True
    priority_aging_s: float = DEFAULT_AGING_S
    prewarm: PrewarmSettings = field(default_factory=PrewarmSettings)


@dataclass(frozen=True)
class NodeKind:
    """What a node is: its GPU, checkpoint tier, catalog and per-instance KV budget, and the
    models it loads as it starts (NodeConfig.preload)."""

    gpu: str
    tier: str
    models: tuple[str, ...]
    kv_tokens: int
    init_s: float
    preload: tuple[str, ...] = ()


@dataclass(eq=False)
class SimInstance:
    model: str
    footprint: int
    batch: SimBatch
    state: str = "loading"
    running: int = 0
    last_used: float = 0.0
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    started: float = 0.0  # when its load began


@dataclass(eq=False)
class Asked:
    """A request at this node: what it asked for and where its answers go."""

    request_id: str
    model: str
    prompt_tokens: int
    max_new_tokens: int
    action: str
    reply: Reply
    hops: int = 0
    priority: int = 0
    offset: int = 0  # tokens the client had when this node took it (a migration's destination)
    stream: bool = False  # tokens one by one (a migration's destination streams to its source)
    cold: bool = False
    ready_on_arrival: bool = False
    first_token: float | None = None
    label: str = ""  # what this node did for it (Done.action), from its first run here
    decided_by: str = ""  # hybrid: who placed it (Infer.decided_by, echoed in Done)
    epoch: int = 0  # the epoch of the coordinator that placed it (Infer.epoch; 0: none)
    run_t: float = 0.0
    # The agent's Done.timings of its first run here, from run_t: the slot asked for, the batch
    # joined (server.py's stream start), the first token.
    slot_t: float | None = None
    fed_t: float | None = None
    first_t: float | None = None
    inst: SimInstance | None = None  # the instance it holds (acquired), while it runs here
    ticket: Ticket | None = None  # its place in the slot queue, while it waits there
    seq: Seq | None = None  # in the instance's batch
    serving: str = ""  # who generates it now: "" this node, else its migration's destination
    move: Move | None = None  # its live migration, while one is under way


@dataclass(frozen=True)
class SimResume:
    """The agent's `Resume` in token counts (the simulator has no texts)."""

    request_id: str
    model: str
    prompt_tokens: int
    tokens: int
    max_new_tokens: int  # still to generate
    round: int
    final: bool


@dataclass(eq=False)
class Move:
    """A live migration at its source (server.py `Served.order` and what goes with it)."""

    order: Migrate
    started_t: float
    heard_t: float  # the destination's last word
    rounds: Rounds = field(default_factory=Rounds)
    sent: int = 0  # the context (tokens) of the round under way
    switching: bool = False  # the request is being stopped at its next token
    relay: Relay | None = None  # after the switch
    switch_t: float = 0.0


class SimNode:
    """One node. `publish(state)` is called on every change (coalesced) and every interval;
    `link` carries a frame to another node, `announce` a ClusterEvent to the collector."""

    def __init__(self, name: str, kind: NodeKind, clock: Clock, publish: Callable[[NodeState], None],
                 publish_interval_s: float = 1.0, scheduler: str = "centralized", rules: NodeRules = NodeRules(),
                 link: Link | None = None, announce: Announce | None = None,
                 costs: AgentCosts | None = None) -> None:
        """`costs`: the agent's own time per message (daemons/sim/agent.py), spent on `loop`;
        none by default (the engine passes SimConfig's)."""
        self.name, self.kind, self.clock = name, kind, clock
        self.costs = costs if costs is not None else AgentCosts.free()
        self.loop = AgentLoop(clock)
        self.endpoint = f"sim://{name}"
        self.catalog = Catalog(kind.models, kind.gpu, kind.tier, kind.kv_tokens, kind.init_s)
        self.memory_total = self.catalog.gpu_memory
        self._entries = self.catalog.entries()
        self._deployments = {m: resolve(EmulatorConfig(m, gpu=kind.gpu, checkpoint_tier=kind.tier,
                                                       max_batch_total_tokens=kind.kv_tokens,
                                                       init_seconds=kind.init_s)) for m in kind.models}
        self._publish = publish
        self._link: Link = link or (lambda src, dst, deliver: None)
        self._announce: Announce = announce or (lambda kind, node, text: None)
        self.publish_interval_s = publish_interval_s
        self.scheduler = scheduler
        self.rules = rules
        self.slots: SlotRule[Callable[[], None]] = self._slot_rule()
        self.instances: dict[str, SimInstance] = {}
        self.active: dict[str, Asked] = {}
        self._rounds: set[str] = set()  # migration rounds prefilling here (as a destination)
        self.handed_over = 0  # requests in `active` that only pass on their destination's replies
        # Gossip mode: requests this node's peer is placing. The agent holds every request that
        # arrived (server.py `active`, a task per Infer) until it is served here, handed on or
        # failed, so a peer counts the one it is placing in its own in_flight when it decides.
        self.held: set[str] = set()
        self._room_waiters: list[Callable[[], None]] = []
        self.gen = 1
        self.fence = EpochFence()  # the newest coordinator epoch seen (fencing.py)
        self.seq = 0
        self.up = True
        self._changed = False
        self._next_publish = 0.0
        self._last_publish = -1e9
        self._publish_due = False
        self.loads = 0
        self.evictions = 0
        self.prewarms = 0
        # A gossip or hybrid peer's view (engine: its SimPeer's), for its own pre-warm rounds.
        self.peer_view: Callable[[], ClusterView] | None = None
        self._learn()
        self.migrations = {"refused": 0, "abandoned": 0, "resumed_here": 0, "migrated": 0}

    def _learn(self) -> None:
        """A process's learning (server.py): estimates, forecasts, the pre-warm ledger, on our clock."""
        self.learning = NodeLearning(self.rules.prewarm, self.clock.now)
        self.watcher = LoadWatcher(self.learning, self._event, lambda: self.clock.now)

    def _event(self, kind: str, detail: str) -> None:
        """The node's own event, its detail naming it first (server.py `_event`)."""
        self._announce(kind, self.name, f"by={self.name};{detail}")

    def _slot_rule(self) -> SlotRule[Callable[[], None]]:
        r = self.rules
        return SlotRule(r.max_running, r.priority_aging_s, r.priority)

    # ----- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._beat(self.gen)
        gen = self.gen
        for model in self.kind.preload:  # server.py `_preload`: acquired once, released when ready
            self._with_instance(model, lambda: gen == self.gen, lambda inst, cold, ready: self._release(inst))
        self.clock.after(PROGRESS_EVERY_S, lambda: self._progress(gen))
        if self.rules.prewarm.enabled and self.peer_view is not None:
            self.clock.after(TICK_S, lambda: self._prewarm_round(gen))

    def _progress(self, gen: int) -> None:
        """A Progress to the asker of every request held here, each PROGRESS_EVERY_S (server.py
        `_beat`): its attempt is alive, so the load generator's silence timer starts again."""
        if not self.up or gen != self.gen:
            return
        for asked in list(self.active.values()):
            started = asked.first_token is not None or asked.offset > 0
            asked.reply(Progress(asked.request_id, asked.serving or self.name, 1 if started else 0))
        self.clock.after(PROGRESS_EVERY_S, lambda: self._progress(gen))

    def kill(self) -> None:
        """The process dies: its instances with it, its requests unanswered."""
        self.up = False
        self.loop.die()
        for inst in self.instances.values():
            inst.batch.close()
        self.instances.clear()
        self.active.clear()
        self.handed_over = 0
        self._rounds.clear()
        self.held.clear()
        self._room_waiters.clear()
        self.slots = self._slot_rule()

    def restart(self) -> None:
        """Boot again: a new generation, nothing loaded."""
        self.up = True
        self.gen += 1
        self.seq = 0
        self.fence = EpochFence()  # the epoch it knew was in the old process's memory
        self._learn()  # a new process has learnt nothing yet
        self.start()

    # ----- coordinator failover (fencing.py) -----------------------------------------------------
    def epoch_notice(self, epoch: int) -> None:
        if self.up:
            self.fence.learn(epoch)

    def witness(self, query: WitnessQuery, probe: Callable[[Callable[[], None]], None],
                vote: Callable[[WitnessVote], None]) -> None:
        """server.py `_witness`: probe the coordinator the query names (`probe(on_answer)`) for
        the window it asks; vote for the takeover if it stays silent that long."""
        if not self.up:
            return
        window, answered, gen = probe_window(query.probe_s), [False], self.gen
        probe(lambda: answered.__setitem__(0, True))

        def decide() -> None:
            if self.up and gen == self.gen:
                granted, why = witness_vote(answered[0], query.peer, window)
                vote(WitnessVote(self.name, self.fence.epoch, granted, why))

        self.clock.after(window, decide)

    # ----- serving ----------------------------------------------------------------------------
    def can_host(self, model: str) -> bool:
        """The model is here already (loading or ready), or fits once idle instances are evicted."""
        if model not in self.catalog.models:
            return False
        if model in self.instances:
            return True
        return fits_after_eviction(self.catalog.footprint(model), self.memory_total, self.instances.values())

    def _unservable(self, rid: str, model: str) -> Error | None:
        """The agent's answer to a model it cannot serve at all."""
        if model not in self.catalog.models:
            return Error(rid, "unknown_model", f"model {model!r} is not in this node's "
                         f"catalog ({', '.join(self.catalog.models)})", self.name)
        need = self.catalog.footprint(model)
        if need > self.memory_total:
            return Error(rid, "no_capacity", f"{model} needs {need / 2**30:.1f} GiB but "
                         f"the GPU has only {self.memory_total / 2**30:.1f} GiB", self.name)
        return None

    def hold(self, request_id: str) -> None:
        """A request entered this node's peer (gossip mode): it counts in in_flight until `let_go`."""
        if self.up:
            self.held.add(request_id)
            self._changed_now()

    def let_go(self, request_id: str) -> None:
        """The peer served, forwarded or failed a request it held (server.py `_finished`)."""
        if request_id in self.held:
            self.held.discard(request_id)
            self._changed_now()

    def entered(self, asked: Asked) -> None:
        """An Infer from the load generator reached this node (server.py `_accept`): a new one
        (not a duplicate of one here) is an arrival of its model for the forecaster."""
        rid = asked.request_id
        if self.up and asked.hops == 0 and rid not in self.active and rid not in self.held:
            self.learning.arrived(asked.model, self.clock.now)

    def infer(self, asked: Asked) -> None:
        """An Infer reaches the agent: taken up when its loop is free (daemons/sim/agent.py)."""
        self.loop.run(0.0, lambda: self._take(asked))

    def _take(self, asked: Asked) -> None:
        if not self.up:
            return
        stale = self.fence.stale(asked.epoch)  # server.py `_accept` rule 3: a deposed coordinator's placement
        if stale is not None:
            asked.reply(Error(asked.request_id, "stale_epoch", stale, self.name))
            return
        self.fence.learn(asked.epoch)
        refused = self._unservable(asked.request_id, asked.model)
        if refused is not None:
            asked.reply(refused)
            return
        self.active[asked.request_id] = asked
        asked.run_t = self.clock.now
        self._changed_now()
        self._run(asked)

    def _here(self, asked: Asked) -> bool:
        return self.up and self.active.get(asked.request_id) is asked

    def _run(self, asked: Asked) -> None:
        """server.py `_run`: the instance (ModelManager.acquire), a slot, then the batch."""
        if not asked.label:  # its first run here: did it find a pre-warmed instance ready?
            inst = self.instances.get(asked.model)
            if self.learning.first_use(asked.model, inst is not None and inst.state == "ready"):
                self._event("prewarm_hit", f"model={asked.model};request={asked.request_id}")

        def got(inst: SimInstance, cold: bool, ready: bool) -> None:
            if not self._here(asked):
                self._release(inst)
                return
            if not asked.label:  # the first run here names what this node did
                asked.cold, asked.ready_on_arrival = cold, ready
                asked.label = served_action(asked.action, cold, ready)
                asked.slot_t = self.clock.now
            asked.inst = inst
            asked.ticket = self.slots.take(asked.model, lambda: self._to_backend(asked), asked.priority, self.clock.now)
            if asked.ticket is None:
                self._to_backend(asked)
            else:
                self._changed_now()  # it waits in the slot queue: the state shows it

        self._with_instance(asked.model, lambda: self._here(asked), got)

    def _with_instance(self, model: str, wanted: Callable[[], bool],
                       then: Callable[[SimInstance, bool, bool], None]) -> None:
        """ModelManager.acquire's order: the instance, loading it (after room is made) if absent;
        `then(instance, cold, ready when acquired)` once it is ready."""
        if not self.up or not wanted():
            return
        inst = self.instances.get(model)
        cold = inst is None
        if inst is None:
            if not self._make_room(self.catalog.footprint(model)):
                self._room_waiters.append(lambda: self._with_instance(model, wanted, then))
                return
            inst = self._start(model)
        ready = inst.state == "ready"
        inst.running += 1
        inst.last_used = self.clock.now
        if ready:
            then(inst, cold, ready)
        else:
            got = inst
            inst.on_ready.append(lambda: then(got, cold, ready))

    def _make_room(self, need: int) -> bool:
        now = self.clock.now
        while self.memory_total - self.ledger_used() < need:
            # LRU, or least expected use with pre-warming on (instances.py `_lru_idle`)
            victim = lru_idle(self.instances.values(), key=lambda i: self.learning.victim_key(i.model, i.last_used,
                                                                                                now))
            if victim is None:
                return False  # every loaded model is busy: wait for one to go idle
            self._evict(victim)
        return True

    def _evict(self, victim: SimInstance) -> None:
        """ModelManager.evict: the observers hear of it, then the instance stops."""
        self.watcher.evicted(victim.model)
        victim.batch.close()
        del self.instances[victim.model]
        self.evictions += 1

    def _start(self, model: str) -> SimInstance:
        d = self._deployments[model]
        inst = SimInstance(model, self.catalog.footprint(model), SimBatch(self.clock, d.coefficients, d.engine_limits),
                           last_used=self.clock.now, started=self.clock.now)
        self.instances[model] = inst
        self.loads += 1
        gen = self.gen
        # The catalog's load time (what the policies estimate), and the launch the agent waits for
        # beyond it (the backend process's start-up, its /health polls: AgentCosts.launch_s).
        self.clock.after(self.catalog.load_s(model) + self.costs.launch_s, lambda: self._loaded(inst, gen))
        return inst

    def _loaded(self, inst: SimInstance, gen: int) -> None:
        if not self.up or gen != self.gen or self.instances.get(inst.model) is not inst:
            return
        inst.state = "ready"
        self.watcher.loaded(inst.model, self.clock.now - inst.started)
        waiting, inst.on_ready = inst.on_ready, []
        for go in waiting:
            go()
        self._changed_now()

    def _to_backend(self, asked: Asked) -> None:
        """The agent asks the backend: serve_s of its loop (the request, its stream, its answers:
        daemons/sim/agent.py), after what the loop is busy with, then into the batch."""
        self.loop.run(self.costs.serve_s, lambda: self._feed(asked))

    def _feed(self, asked: Asked) -> None:
        """It holds a slot: into the instance's batch, from token `offset` on."""
        asked.ticket = None
        if asked.fed_t is None:
            asked.fed_t = self.clock.now
        inst = asked.inst
        if inst is None or not self._here(asked):
            self._pass_slot(asked.model)
            if inst is not None:
                self._release(inst)
            return
        rid = asked.request_id
        if asked.move is not None and asked.move.switching:  # switched before it ran again: nothing to stop
            self._leave_backend(asked)
            self._hand_over(asked, asked.move, asked.offset, self.clock.now)
            return

        def first(t: float) -> None:
            if asked.first_t is None:
                asked.first_t = t
            if asked.offset == 0:  # a resumed request's client has its first token already
                asked.first_token = t
                asked.reply(FirstToken(rid, self.name))
            if asked.stream:
                asked.reply(StreamToken(rid, self.name, asked.offset))

        def done(t: float, tokens: int) -> None:
            self._leave_backend(asked)
            self.active.pop(rid, None)
            asked.move = None  # a migration's rounds end with it (server.py `_end_migration`)
            timings = self._timings(asked, t)
            if not asked.offset:  # a migration's destination re-prefilled more than a prompt: not comparable
                self.learning.served(asked.model, timings, tokens)
            asked.reply(Done(rid, self.name, asked.offset + tokens, "length", asked.label, asked.hops, timings,
                             asked.decided_by))
            self._changed_now()

        seq = Seq(asked.prompt_tokens + asked.offset, max(1, asked.max_new_tokens - asked.offset), first, done)
        if not inst.batch.submit(seq):
            self._leave_backend(asked)
            self.active.pop(rid, None)
            asked.reply(Error(rid, "overloaded", "Model is overloaded", self.name))
        else:
            asked.seq = seq
        self._changed_now()

    def _timings(self, asked: Asked, end: float) -> dict[str, float]:
        """server.py `_run`'s Done.timings, from the start of the request's run here."""
        start = asked.run_t
        fed = asked.fed_t if asked.fed_t is not None else end
        timings = {"load_wait_s": fed - start, "ttft_s": (asked.first_t if asked.first_t is not None else end) - start}
        if self.rules.max_running:  # its wait in the slot queue (part of load_wait_s)
            timings["slot_wait_s"] = fed - (asked.slot_t if asked.slot_t is not None else fed)
        return {**timings, "total_s": end - start}

    def _leave_backend(self, asked: Asked) -> None:
        """The request left the backend: its slot passes on, its instance is released."""
        inst, asked.inst, asked.seq = asked.inst, None, None
        self._pass_slot(asked.model)
        if inst is not None:
            self._release(inst)

    def _pass_slot(self, model: str) -> None:
        waiter = self.slots.release(model)
        if waiter is not None:
            waiter()

    def _release(self, inst: SimInstance) -> None:
        inst.running -= 1
        inst.last_used = self.clock.now
        if inst.running == 0 and self._room_waiters:
            waiters, self._room_waiters = self._room_waiters, []
            for go in waiters:
                go()

    def cancel(self, rid: str) -> None:
        """A migration's source gave up on this destination: stop the request, answer nobody."""
        asked = self.active.pop(rid, None)
        if asked is None or not self.up:
            return
        if asked.serving:  # it had moved on from here in turn: its own destination runs on, unheard
            self.handed_over -= 1
            asked.move = None
        if asked.seq is not None and asked.inst is not None:
            asked.inst.batch.stop(asked.seq, lambda kept, t: self._leave_backend(asked))
        elif asked.ticket is not None:
            self.slots.discard(asked.model, asked.ticket)
            asked.ticket = None
            if asked.inst is not None:
                self._release(asked.inst)
        self._changed_now()

    # ----- pre-warming ---------------------------------------------------------------------------
    def prewarm(self, order: Prewarm, by: str) -> None:
        """server.py `prewarm`: load `order.model` ahead of demand, evicting `order.evict` first;
        nothing if it is here already or cannot fit now."""
        model = order.model
        if not self.up:
            return
        taken, detail = self.learning.take_prewarm(order, by, model in self.instances, self.can_host(model),
                                                   self.catalog, self.clock.now)
        if not taken:
            return
        self.prewarms += 1
        self._event("prewarm", detail)
        for name in order.evict:  # ModelManager.evict_idle: those loaded and idle now
            inst = self.instances.get(name)
            if inst is not None and inst.running == 0 and inst.state == "ready":
                self._evict(inst)
        gen = self.gen
        self._with_instance(model, lambda: gen == self.gen, lambda inst, cold, ready: self._release(inst))
        self._changed_now()  # the load shows in the next state

    def _prewarm_round(self, gen: int) -> None:
        """server.py `_prewarm_as_peer`: a gossip or hybrid peer's own round every TICK_S."""
        if not self.up or gen != self.gen or self.peer_view is None:
            return
        for order in self.learning.peer_round(self.peer_view, self.name, self.clock.now):
            self.prewarm(order_message(order), self.name)
        self.clock.after(TICK_S, lambda: self._prewarm_round(gen))

    # ----- live migration: the source ------------------------------------------------------------
    def _tokens(self, asked: Asked) -> int:
        """Tokens the request has now (server.py `Served.tokens`)."""
        if asked.seq is None or asked.inst is None:
            return asked.offset
        return asked.offset + asked.inst.batch.tokens(asked.seq)

    def migrate(self, order: Migrate) -> None:
        """server.py `_migrate`: start moving a request served here to `order.to_node`."""
        if not self.up:
            return
        rid = order.request_id or pick(self._candidates(), order.model)
        asked = self.active.get(rid)
        why = refusal(order, self.name, rid, asked is not None,
                      asked is not None and (asked.move is not None or bool(asked.serving)),
                      self._tokens(asked) if asked is not None else 0, SIM_SCHEMES)
        if asked is None or why:
            self.migrations["refused"] += 1
            return
        now = self.clock.now
        asked.move = Move(order, now, now)
        self._send_round(asked, asked.move)
        self._watch(asked, asked.move)

    def _candidates(self) -> list[tuple[str, str, int, int]]:
        """`pick`'s candidates: the requests generated here, none migrating."""
        out = []
        for rid, asked in self.active.items():
            if asked.move is None and not asked.serving:
                tokens = self._tokens(asked)
                out.append((rid, asked.model, tokens, asked.max_new_tokens - tokens))
        return out

    def _send_round(self, asked: Asked, move: Move) -> None:
        move.sent = self._tokens(asked)
        self._send_resume(asked, move, move.sent, final=False)

    def _send_resume(self, asked: Asked, move: Move, tokens: int, final: bool) -> None:
        msg = SimResume(asked.request_id, asked.model, asked.prompt_tokens, tokens, asked.max_new_tokens - tokens,
                        move.rounds.done, final)
        self._link(self.name, move.order.to_node, lambda node: node.resume(self.name, msg))

    def _watch(self, asked: Asked, move: Move) -> None:
        """server.py `_from_destination`: SILENCE_S without a word from the destination fails it."""
        heard = move.heard_t

        def check() -> None:
            if self.up and asked.move is move and move.heard_t == heard:
                self._move_failed(asked, move, f"the destination was silent for {SILENCE_S:g} s")

        self.clock.after(SILENCE_S, check)

    def from_destination(self, dst: str, body: Any) -> None:
        """A reply from a migration's destination about one of our requests."""
        asked = self.active.get(getattr(body, "request_id", ""))
        move = asked.move if asked is not None else None
        if not self.up or asked is None or move is None or move.order.to_node != dst:
            return
        move.heard_t = self.clock.now
        self._watch(asked, move)
        if isinstance(body, Error):
            self._move_failed(asked, move, f"the destination answered {body.code}: {body.message[:200]}")
        elif move.relay is None:
            if isinstance(body, ResumeReady) and body.round == move.rounds.done and not move.switching:
                self._after_round(asked, move)
        elif isinstance(body, StreamToken):
            if move.relay.token(body.index, self.clock.now) is Verdict.BROKEN:
                self._move_failed(asked, move, f"token {body.index} arrived where {move.relay.next_index} was due")
        elif isinstance(body, Done):
            self._migrated(asked, move, body)

    def _after_round(self, asked: Asked, move: Move) -> None:
        if move.rounds.after_round(move.sent, self._tokens(asked)) is Step.AGAIN:
            self._send_round(asked, move)
            return
        move.switching = True  # server.py: the stream stops at its next token, then the handover
        if asked.seq is not None and asked.inst is not None:
            asked.inst.batch.stop(asked.seq, lambda kept, last_t: self._hand_over(asked, move, asked.offset + kept,
                                                                                  last_t))
        # else it waits for its instance or a slot (resumed here): `_feed` hands it over instead

    def _hand_over(self, asked: Asked, move: Move, tokens: int, last_t: float) -> None:
        """server.py `_hand_over`: the client hears a Handover, the destination continues."""
        if asked.seq is not None:
            self._leave_backend(asked)
        if not self._here(asked) or asked.move is not move:
            return
        move.relay, move.switch_t = Relay(tokens, last_t), self.clock.now
        asked.serving = move.order.to_node
        self.handed_over += 1
        asked.reply(Handover(asked.request_id, self.name, move.order.to_node, tokens))
        self._send_resume(asked, move, tokens, final=True)
        self._changed_now()

    def _move_failed(self, asked: Asked, move: Move, why: str) -> None:
        """Before the switch the request stays here; after it, it resumes here from the last
        token the client has, and the destination is told to stop."""
        asked.move = None
        if move.relay is None:
            if asked.seq is not None:
                asked.seq.on_stop = None  # not switching after all
            self.migrations["abandoned"] += 1
            return
        rid, dst = asked.request_id, move.order.to_node
        self._link(self.name, dst, lambda node: node.cancel(rid))
        asked.serving = ""
        self.handed_over -= 1
        asked.offset = move.relay.next_index
        asked.reply(Handover(rid, dst, self.name, asked.offset))
        self.migrations["resumed_here"] += 1
        self._run(asked)

    def _migrated(self, asked: Asked, move: Move, done: Done) -> None:
        relay = move.relay
        assert relay is not None
        now = self.clock.now
        first_t = relay.first_t if relay.first_t is not None else now
        figures = {"migration_resume_s": first_t - move.switch_t, "migration_gap_s": relay.gap_s,
                   "migration_total_s": first_t - move.started_t}
        rid = asked.request_id
        self._announce("migrated", self.name, detail(self.name, rid, move.order.to_node, relay.switched_at, figures))
        timings = {"total_s": now - asked.run_t, **figures, "migration_tokens": float(relay.switched_at),
                   "migration_rounds": float(move.rounds.done)}
        self.active.pop(rid, None)
        self.handed_over -= 1
        asked.move = None
        self.migrations["migrated"] += 1
        asked.reply(Done(rid, done.node, done.tokens, done.finish_reason, asked.label, asked.hops, timings,
                         asked.decided_by))
        self._changed_now()

    # ----- live migration: the destination -------------------------------------------------------
    def resume(self, source: str, msg: SimResume) -> None:
        """server.py `_resume`: a round prefills the context and answers ResumeReady; the final
        Resume is served like a request from token `msg.tokens` on, its replies to the source."""
        if not self.up:
            return
        rid = msg.request_id

        def reply(body: Any) -> None:
            self._link(self.name, source, lambda node: node.from_destination(self.name, body))

        busy = rid in self.active or rid in self._rounds
        if msg.final and not busy:
            self.infer(Asked(rid, msg.model, msg.prompt_tokens, msg.tokens + msg.max_new_tokens, "MIGRATE", reply,
                             offset=msg.tokens, stream=True))
        elif not busy and len(self._rounds) < MAX_RESUME_ROUNDS:
            self._prefill_round(msg, reply)
        else:
            why = "it is running here already" if busy else "too many migrations under way here"
            reply(Error(rid, "busy", f"cannot take over {rid}: {why}", self.name))

    def _prefill_round(self, msg: SimResume, reply: Reply) -> None:
        """Recompute the context (one prefill, its token thrown away), loading the model first if
        it is not here, with a Progress to the source every second meanwhile."""
        rid, began, gen = msg.request_id, self.clock.now, self.gen
        refused = self._unservable(rid, msg.model)
        if refused is not None:
            reply(refused)
            return
        self._rounds.add(rid)

        def beat() -> None:
            if self.up and gen == self.gen and rid in self._rounds:
                reply(Progress(rid, self.name, 0))
                self.clock.after(PROGRESS_EVERY_S, beat)

        self.clock.after(PROGRESS_EVERY_S, beat)

        def got(inst: SimInstance, cold: bool, ready: bool) -> None:
            loaded = self.clock.now

            def done(t: float, tokens: int) -> None:
                self._release(inst)
                self._rounds.discard(rid)
                reply(ResumeReady(rid, self.name, msg.round, msg.tokens, self.clock.now - loaded, loaded - began))

            if not inst.batch.submit(Seq(msg.prompt_tokens + msg.tokens, 1, lambda t: None, done)):
                self._release(inst)
                self._rounds.discard(rid)
                reply(Error(rid, "overloaded", "Model is overloaded", self.name))

        self._with_instance(msg.model, lambda: rid in self._rounds, got)

    # ----- state -------------------------------------------------------------------------------
    def ledger_used(self) -> int:
        return sum(i.footprint for i in self.instances.values())

    def snapshot(self) -> NodeState:
        """The NodeState the agent would publish now (server.py snapshot)."""
        busy = min(1.0, sum(i.batch.busy_ratio() for i in self.instances.values() if i.state == "ready"))
        gpus = [GpuState(0, self.kind.gpu, self.memory_total, self.ledger_used(), round(busy, 4))]
        models = [ModelState(i.model, i.state, i.running if i.state == "loading"
                             else i.batch.queue_size + self.slots.waiting(i.model),
                             i.running, i.footprint, i.last_used) for i in self.instances.values()]
        return NodeState(node=self.name, endpoint=self.endpoint, gen=self.gen, seq=self.seq, gpus=gpus,
                         models=models, queue_depth=sum(m.queue_depth for m in models), scheduler=self.scheduler,
                         in_flight=self.in_flight,
                         catalog=list[CatalogEntry](self._entries), gpu_utilization=round(busy, 4),
                         waiting_by_priority={str(p): n for p, n in self.slots.waiting_by_priority().items()},
                         estimates=self.learning.estimates())

    @property
    def in_flight(self) -> int:
        """Requests in this agent now: serving here (not just relaying) or held by its peer."""
        return len(self.active) - self.handed_over + len(self.held)

    def _changed_now(self) -> None:
        """Publish on change, at most one per MIN_PUBLISH_GAP_S (the agent's coalescing)."""
        if self._publish_due or not self.up:
            return
        self._publish_due = True
        at = max(self.clock.now, self._next_publish)
        gen = self.gen
        self.clock.at(at, lambda: self._emit(gen))

    def _emit(self, gen: int) -> None:
        self._publish_due = False
        if not self.up or gen != self.gen:
            return
        self.seq += 1
        self._last_publish = self.clock.now
        self._next_publish = self.clock.now + MIN_PUBLISH_GAP_S
        self._publish(self.snapshot())

    def _beat(self, gen: int) -> None:
        """The agent's publish loop: a state at least every publish_interval_s after the last one
        (server.py waits for a change or the interval, whichever comes first)."""
        if not self.up or gen != self.gen:
            return
        due = self._last_publish + self.publish_interval_s
        if self.clock.now >= due - 1e-9 and not self._publish_due:
            self._emit(gen)
            due = self.clock.now + self.publish_interval_s
        self.clock.at(due, lambda: self._beat(gen))
