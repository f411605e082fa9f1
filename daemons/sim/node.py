"""A simulated node agent: its instances, memory ledger, loads, evictions and batches.

The node's rules come from the same places as the real agent's: the catalog (footprints
and load times from the profiles, daemons/node/catalog.py), the eviction rule
(daemons/node/eviction.py: idle ready instances, least recently used first), the label of
a served request (daemons/node/actions.py), the instance's batching and latency
(daemons/sim/batch.py over the emulator's rules) and the `NodeState` it publishes (the
same message the coordinator's book and gossip peers read). What is left here is the
order of events the asyncio agent expresses with awaits: a request for a model that is not
loaded starts its load (making room first, or waiting until an instance goes idle), waits
for it, then joins the instance's batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemons.core.messages import CatalogEntry, Done, Error, FirstToken, GpuState, ModelState, NodeState, Progress
from daemons.emulator.daemon import EmulatorConfig, resolve
from daemons.node.actions import served_action
from daemons.node.catalog import Catalog
from daemons.node.config import MIN_PUBLISH_GAP_S, PROGRESS_EVERY_S
from daemons.node.eviction import fits_after_eviction, lru_idle
from daemons.sim.batch import Seq, SimBatch
from daemons.sim.clock import Clock

Reply = Callable[[Any], None]  # a message body back to whoever asked


@dataclass(frozen=True)
class NodeKind:
    """What a node is: its GPU, checkpoint tier, catalog and per-instance KV budget."""

    gpu: str
    tier: str
    models: tuple[str, ...]
    kv_tokens: int
    init_s: float


@dataclass(eq=False)
class SimInstance:
    model: str
    footprint: int
    batch: SimBatch
    state: str = "loading"
    running: int = 0
    last_used: float = 0.0
    on_ready: list[Callable[[], None]] = field(default_factory=list)


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
    cold: bool = False
    ready_on_arrival: bool = False
    first_token: float | None = None


class SimNode:
    """One node. `publish(state)` is called on every change (coalesced) and every interval."""

    def __init__(self, name: str, kind: NodeKind, clock: Clock, publish: Callable[[NodeState], None],
                 publish_interval_s: float = 1.0, scheduler: str = "centralized") -> None:
        self.name, self.kind, self.clock = name, kind, clock
        self.endpoint = f"sim://{name}"
        self.catalog = Catalog(kind.models, kind.gpu, kind.tier, kind.kv_tokens, kind.init_s)
        self.memory_total = self.catalog.gpu_memory
        self._entries = self.catalog.entries()
        self._deployments = {m: resolve(EmulatorConfig(m, gpu=kind.gpu, checkpoint_tier=kind.tier,
                                                       max_batch_total_tokens=kind.kv_tokens,
                                                       init_seconds=kind.init_s)) for m in kind.models}
        self._publish = publish
        self.publish_interval_s = publish_interval_s
        self.scheduler = scheduler
        self.instances: dict[str, SimInstance] = {}
        self.active: dict[str, Asked] = {}
        # Gossip mode: requests this node's peer is placing. The agent holds every request that
        # arrived (server.py `active`, a task per Infer) until it is served here, handed on or
        # failed, so a peer counts the one it is placing in its own in_flight when it decides.
        self.held: set[str] = set()
        self._room_waiters: list[Callable[[], None]] = []
        self.gen = 1
        self.seq = 0
        self.up = True
        self._changed = False
        self._next_publish = 0.0
        self._last_publish = -1e9
        self._publish_due = False
        self.loads = 0
        self.evictions = 0

    # ----- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._beat(self.gen)
        gen = self.gen
        self.clock.after(PROGRESS_EVERY_S, lambda: self._progress(gen))

    def _progress(self, gen: int) -> None:
        """A Progress to the asker of every request held here, each PROGRESS_EVERY_S (server.py
        `_beat`): its attempt is alive, so the load generator's silence timer starts again."""
        if not self.up or gen != self.gen:
            return
        for asked in list(self.active.values()):
            asked.reply(Progress(asked.request_id, self.name, 0 if asked.first_token is None else 1))
        self.clock.after(PROGRESS_EVERY_S, lambda: self._progress(gen))

    def kill(self) -> None:
        """The process dies: its instances with it, its requests unanswered."""
        self.up = False
        for inst in self.instances.values():
            inst.batch.close()
        self.instances.clear()
        self.active.clear()
        self.held.clear()
        self._room_waiters.clear()

    def restart(self) -> None:
        """Boot again: a new generation, nothing loaded."""
        self.up = True
        self.gen += 1
        self.seq = 0
        self.start()

    # ----- serving ----------------------------------------------------------------------------
    def can_host(self, model: str) -> bool:
        """The model is here already (loading or ready), or fits once idle instances are evicted."""
        if model not in self.catalog.models:
            return False
        if model in self.instances:
            return True
        return fits_after_eviction(self.catalog.footprint(model), self.memory_total, self.instances.values())

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

    def infer(self, asked: Asked) -> None:
        if not self.up:
            return
        if asked.model not in self.catalog.models:
            asked.reply(Error(asked.request_id, "unknown_model", f"model {asked.model!r} is not in this node's "
                              f"catalog ({', '.join(self.catalog.models)})", self.name))
            return
        need = self.catalog.footprint(asked.model)
        if need > self.memory_total:
            asked.reply(Error(asked.request_id, "no_capacity", f"{asked.model} needs {need / 2**30:.1f} GiB but "
                              f"the GPU has only {self.memory_total / 2**30:.1f} GiB", self.name))
            return
        self.active[asked.request_id] = asked
        self._changed_now()
        self._acquire(asked)

    def _acquire(self, asked: Asked) -> None:
        """ModelManager.acquire's order: the instance, loading it (after room is made) if absent."""
        if not self.up or asked.request_id not in self.active:
            return
        inst = self.instances.get(asked.model)
        if inst is None:
            if not self._make_room(self.catalog.footprint(asked.model)):
                self._room_waiters.append(lambda: self._acquire(asked))
                return
            inst = self._start(asked.model)
            asked.cold = True
        asked.ready_on_arrival = inst.state == "ready"
        inst.running += 1
        inst.last_used = self.clock.now
        if inst.state == "ready":
            self._submit(inst, asked)
        else:
            inst.on_ready.append(lambda: self._submit(inst, asked))

    def _make_room(self, need: int) -> bool:
        while self.memory_total - self.ledger_used() < need:
            victim = lru_idle(self.instances.values())
            if victim is None:
                return False  # every loaded model is busy: wait for one to go idle
            victim.batch.close()
            del self.instances[victim.model]
            self.evictions += 1
        return True

    def _start(self, model: str) -> SimInstance:
        d = self._deployments[model]
        inst = SimInstance(model, self.catalog.footprint(model), SimBatch(self.clock, d.coefficients, d.engine_limits),
                           last_used=self.clock.now)
        self.instances[model] = inst
        self.loads += 1
        gen = self.gen
        self.clock.after(self.catalog.load_s(model), lambda: self._loaded(inst, gen))
        return inst

    def _loaded(self, inst: SimInstance, gen: int) -> None:
        if not self.up or gen != self.gen or self.instances.get(inst.model) is not inst:
            return
        inst.state = "ready"
        waiting, inst.on_ready = inst.on_ready, []
        for go in waiting:
            go()
        self._changed_now()

    def _submit(self, inst: SimInstance, asked: Asked) -> None:
        rid = asked.request_id

        def first(t: float) -> None:
            asked.first_token = t
            asked.reply(FirstToken(rid, self.name))

        def done(t: float, tokens: int) -> None:
            self._release(inst)
            self.active.pop(rid, None)
            action = served_action(asked.action, asked.cold, asked.ready_on_arrival)
            asked.reply(Done(rid, self.name, tokens, "length", action, asked.hops))
            self._changed_now()

        if not inst.batch.submit(Seq(asked.prompt_tokens, max(1, asked.max_new_tokens), first, done)):
            self._release(inst)
            self.active.pop(rid, None)
            asked.reply(Error(rid, "overloaded", "Model is overloaded", self.name))
            self._changed_now()
        else:
            self._changed_now()

    def _release(self, inst: SimInstance) -> None:
        inst.running -= 1
        inst.last_used = self.clock.now
        if inst.running == 0 and self._room_waiters:
            waiters, self._room_waiters = self._room_waiters, []
            for go in waiters:
                go()

    # ----- state -------------------------------------------------------------------------------
    def ledger_used(self) -> int:
        return sum(i.footprint for i in self.instances.values())

    def snapshot(self) -> NodeState:
        """The NodeState the agent would publish now (server.py snapshot)."""
        busy = min(1.0, sum(i.batch.busy_ratio() for i in self.instances.values() if i.state == "ready"))
        gpus = [GpuState(0, self.kind.gpu, self.memory_total, self.ledger_used(), round(busy, 4))]
        models = [ModelState(i.model, i.state, i.running if i.state == "loading" else i.batch.queue_size,
                             i.running, i.footprint, i.last_used) for i in self.instances.values()]
        return NodeState(node=self.name, endpoint=self.endpoint, gen=self.gen, seq=self.seq, gpus=gpus,
                         models=models, queue_depth=sum(m.queue_depth for m in models), scheduler=self.scheduler,
                         in_flight=len(self.active) + len(self.held), catalog=list[CatalogEntry](self._entries),
                         gpu_utilization=round(busy, 4))

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
