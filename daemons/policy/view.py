"""What a placement policy sees and what it answers: plain frozen data, no sockets, no clocks.

The caller (coordinator, gossip peer, simulator) builds a `ClusterView` from whatever it
knows and hands it to a policy with a `PlacementRequest` and a `random.Random`. The policy
answers a `Decision` or a `Refusal`. Nothing here reads the time or touches the wire, so a
policy run twice on the same view, request and seed gives the same answer.

The view carries two indices (`holders`, `catalog`) so a policy can look at the few
nodes that matter for a model instead of scanning the whole cluster on every request: with
100 nodes a full scan costs tens of microseconds per decision, the index a few.

`pending` is the optimistic update PROTO lacked: placements the caller sent to a node
that the node's published state does not show yet. Counting them as load is what keeps a
burst of requests against stale state from all landing on the same "best" node
(the prototype, joshSi/Team-4-Decentralized-Scheduler; Sparrow, Ousterhout et al. SOSP'13;
Mitzenmacher's power of d choices). `with_placement` applies one placement to a view.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from daemons.core.messages import NodeState
from daemons.core.slotted import positional
from daemons.policy.estimates import Estimate

# Model states a node reports (daemons.core.messages.ModelState.state).
READY = "ready"
LOADING = "loading"
FAILED = "failed"
EVICTING = "evicting"

# Decision actions (daemons.core.messages.ACTIONS) and refusal codes.
SERVE = "SERVE"
COLD_START = "COLD_START"
MIGRATE = "MIGRATE"
NO_NODES = "no_nodes"
UNKNOWN_MODEL = "unknown_model"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One model instance on one node, as last reported by that node."""

    model: str
    state: str  # ready | loading | failed | evicting
    queue_depth: int = 0
    running: int = 0
    memory_bytes: int = 0
    last_used: float = 0.0  # node-local clock: only compared with models of the same node

    @property
    def busy(self) -> bool:
        """Busy models hold requests: evicting one means moving work (MIGRATE), not just memory."""
        return self.running > 0 or self.queue_depth > 0 or self.state == LOADING


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A model a node can load: the memory it would take and how long loading takes there."""

    model: str
    footprint_bytes: int
    load_s: float


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the caller knows it.

    `pending` counts placements sent to this node that its state does not reflect yet;
    `pending_models` names their models (a model there that the node does not list yet is
    a load the caller already ordered, so its footprint is counted as used).
    """

    name: str
    endpoint: str
    alive: bool = True
    models: Mapping[str, LoadedModel] = field(default_factory=dict)
    queue_depth: int = 0
    in_flight: int = 0
    pending: int = 0
    pending_models: frozenset[str] = frozenset()
    memory_total: int = 0
    memory_used: int = 0
    catalog: Mapping[str, CatalogItem] = field(default_factory=dict)
    # Requests waiting in the node's own queues, per priority (class): capacity.ahead counts
    # only the ones a new request would not overtake.
    waiting_by_priority: Mapping[int, int] = field(default_factory=dict)
    # What the node has observed per model (estimates.py): for `--affinity learned`.
    estimates: Mapping[str, Estimate] = field(default_factory=dict)
    # Derived once at construction, read on every decision.
    gpu_util: float = field(init=False, default=0.0)
    free_bytes: int = field(init=False, default=0)
    reclaimable_bytes: int = field(init=False, default=0)
    # Requests at this node, plus the ones we sent that it has not reported yet.
    # `in_flight` (every request the node agent holds, queued or running) is counted the
    # moment a request arrives, while `queue_depth` may come from a periodic scrape of the
    # backends; the larger of the two is the fresher estimate. A field, not a property:
    # policies read it several times per candidate node on every decision.
    load: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        # Plain loops: this runs after every decision (with_pending), generators cost 2x.
        pending = self.pending_models
        free = self.memory_total - self.memory_used
        if pending:
            for model in pending:
                if model not in self.models and model in self.catalog:
                    free -= self.catalog[model].footprint_bytes  # a load we ordered
        free = max(0, free)
        idle = 0
        for m in self.models.values():
            if not (m.running or m.queue_depth or m.state == LOADING or m.model in pending):
                idle += m.memory_bytes
        total = self.memory_total
        object.__setattr__(self, "free_bytes", free)
        object.__setattr__(self, "reclaimable_bytes", free + idle)
        object.__setattr__(self, "gpu_util", min(1.0, self.memory_used / total) if total > 0 else 0.0)
        held = self.queue_depth if self.queue_depth > self.in_flight else self.in_flight
        object.__setattr__(self, "load", held + self.pending)

    def is_idle(self, m: LoadedModel) -> bool:
        """Idle instances may be evicted to make room; busy or just-placed ones may not."""
        return not m.busy and m.model not in self.pending_models

    def has_model(self, model: str) -> bool:
        """Loaded, loading, or a load already ordered: the model is (about to be) here."""
        m = self.models.get(model)
        if m is not None:
            return m.state in (READY, LOADING)
        return model in self.pending_models

    def with_pending(self, model: str) -> NodeView:
        """This node with one more placement for `model` sent to it."""
        if model in self.pending_models:
            return _one_more_pending(self)
        return NodeView(self.name, self.endpoint, self.alive, self.models, self.queue_depth, self.in_flight,
                        self.pending + 1, self.pending_models | {model}, self.memory_total, self.memory_used,
                        self.catalog, self.waiting_by_priority, self.estimates)

    def is_ready(self, model: str) -> bool:
        m = self.models.get(model)
        return m is not None and m.state == READY


def _copier_with_one_more(cls: type[NodeView]) -> Callable[[NodeView], NodeView]:
    """`_one_more_pending`, generated from NodeView's fields: `node` with one more placement of
    a model already pending there. What __post_init__ derives is the same but `load` (one more),
    so it is copied rather than derived again, which halves the cost of the step the coordinator
    takes after every decision. Straight-line code setting each slot through its descriptor runs
    in half the time of a loop over the fields (the way `dataclasses` generates `__init__`)."""
    bumped = {"pending": "node.pending + 1", "load": "node.load + 1"}
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def one_more_pending(node):", "    out = new(cls)"]
    for f in fields(cls):
        env[f"set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        lines.append(f"    set_{f.name}(out, {bumped.get(f.name, f'node.{f.name}')})")
    lines.append("    return out")
    exec("\n".join(lines), env)  # source from NodeView's own field names, never from input
    copier: Callable[[NodeView], NodeView] = env["one_more_pending"]
    return copier


_one_more_pending = _copier_with_one_more(NodeView)


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    """Who can load what: changes only when a node joins, dies or changes its catalog."""

    listing: Mapping[str, tuple[str, ...]]  # model -> alive nodes that list it, sorted
    known: frozenset[str]  # in any node's catalog or models, alive or dead
    fastest_load_s: Mapping[str, float]  # model -> least load time among `listing`

    @classmethod
    def build(cls, nodes: Iterable[NodeView]) -> CatalogIndex:
        listing: dict[str, list[str]] = {}
        fastest: dict[str, float] = {}
        known: set[str] = set()
        for n in nodes:
            known.update(n.catalog)
            known.update(n.models)
            if n.alive:
                name = n.name
                for model, item in n.catalog.items():
                    listing.setdefault(model, []).append(name)
                    load_s, best = item.load_s, fastest.get(model)
                    if best is None or not best < load_s:  # min(load_s, best), without the call
                        fastest[model] = load_s
        return cls({m: tuple(sorted(v)) for m, v in listing.items()}, frozenset(known), fastest)

    def patched(self, nodes: Mapping[str, NodeView], old: NodeView | None, new: NodeView,
                catalog_changed: bool = True) -> CatalogIndex:
        """This index after `old` (None: a new name) became `new` in `nodes` (which already
        holds `new`): equal to `CatalogIndex.build(nodes.values())`, but patched for the one
        node, so a node joining a cluster of N costs O(models) index work, not O(N) (a full
        rebuild per join made starting a 10,000-node cluster quadratic).

        `catalog_changed=False` promises the catalog and liveness are as in `old`.
        """
        listing, fastest = self.listing, self.fastest_load_s
        if catalog_changed or old is None or old.alive != new.alive:
            was = old.catalog if old is not None and old.alive else {}
            now = new.catalog if new.alive else {}
            moved = [m for m in {*was, *now}
                     if m not in was or m not in now or was[m].load_s != now[m].load_s]
            if moved:
                listing, fastest = dict(listing), dict(fastest)
                for model in moved:
                    _patch_listing(listing, fastest, nodes, model, new.name, was.get(model), now.get(model))
        return CatalogIndex(listing, _patch_known(self.known, nodes, old, new), fastest)


def _patch_listing(listing: dict[str, tuple[str, ...]], fastest: dict[str, float], nodes: Mapping[str, NodeView],
                   model: str, name: str, was: CatalogItem | None, now: CatalogItem | None) -> None:
    """One model's entry after node `name`'s item for it went from `was` to `now`."""
    names = list(listing.get(model, ()))
    if was is None:
        insort(names, name)
    elif now is None:
        names.remove(name)
    if not names:
        del listing[model]
        del fastest[model]
        return
    listing[model] = tuple(names)
    best = fastest.get(model)
    if now is not None and (best is None or now.load_s <= best):
        fastest[model] = now.load_s if best is None else min(best, now.load_s)
    elif was is not None and best is not None and was.load_s <= best:
        # The node that held the minimum left or got slower: look at every lister again.
        fastest[model] = min(nodes[n].catalog[model].load_s for n in names)


def _patch_known(known: frozenset[str], nodes: Mapping[str, NodeView], old: NodeView | None,
                 new: NodeView) -> frozenset[str]:
    """Every model in any node's catalog or models, after `old` became `new`."""
    keys = new.catalog.keys() | new.models.keys()
    if old is not None and not (old.catalog.keys() | old.models.keys()) <= keys:
        # A model left this node: it stays known only if another node still has it (rare).
        return frozenset().union(*(n.catalog.keys() | n.models.keys() for n in nodes.values()))
    return known if keys <= known else known | keys


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Every node the caller knows, alive or not, plus the indices policies use.

    `cursor` is the number of decisions taken before this one (round-robin's position);
    the caller increments it, which keeps the policy itself stateless.
    """

    nodes: Mapping[str, NodeView]
    holders: Mapping[str, tuple[str, ...]]  # model -> alive nodes where has_model(), sorted
    catalog: CatalogIndex
    order: tuple[str, ...]  # alive node names, sorted: a stable order for round-robin
    cursor: int = 0

    @classmethod
    def build(cls, nodes: Iterable[NodeView], cursor: int = 0) -> ClusterView:
        by_name = {n.name: n for n in nodes}
        holders: dict[str, list[str]] = {}
        for n in by_name.values():
            if n.alive:
                # n.has_model over its models and pending ones, inlined: a gossip peer builds
                # a view of every member for each request it places.
                name, models = n.name, n.models
                for model, m in models.items():
                    if m.state == READY or m.state == LOADING:
                        holders.setdefault(model, []).append(name)
                for model in n.pending_models:
                    if model not in models:
                        holders.setdefault(model, []).append(name)
        return cls(by_name, {m: tuple(sorted(v)) for m, v in holders.items()},
                   CatalogIndex.build(by_name.values()), _alive_order(by_name), cursor)

    def alive(self) -> list[NodeView]:
        return [self.nodes[name] for name in self.order]


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """The part of a schedule request a policy looks at."""

    model: str
    prompt_tokens: int = 0
    max_new_tokens: int = 0
    priority: int = 0
    exclude: frozenset[str] = frozenset()  # nodes that already failed this request
    slo_ttft_s: float = 0.0  # its class's TTFT SLO (0: none), for `--admission slo` (slo.py)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where to run a request and what the node must do first.

    `evict` names the models the node has to remove first: idle ones for COLD_START,
    busy ones whose running requests move elsewhere for MIGRATE.
    """

    node: str
    endpoint: str
    action: str  # SERVE | COLD_START | MIGRATE
    est_wait_s: float
    reason: str
    evict: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """No node can take the request; `code` is no_nodes or unknown_model."""

    code: str
    message: str


def with_node(view: ClusterView, node: NodeView, catalog_changed: bool = True) -> ClusterView:
    """The view with `node` added or replaced, its indices patched rather than rebuilt.

    Equal to `ClusterView.build` over the new node set (tests/policy/test_view_patch.py),
    at O(models) index work per call instead of O(nodes). Pass `catalog_changed=False`
    when the node's catalog and liveness are as before: its catalog entries are then not
    compared, which keeps a state update cheap.
    """
    nodes = dict(view.nodes)
    nodes[node.name] = node
    return _indices_patched(view, nodes, view.nodes.get(node.name), node, catalog_changed)


def rebuilt_view(previous: ClusterView | None, nodes: Sequence[NodeView], most: float = 0.25) -> ClusterView:
    """`ClusterView.build(nodes)`, made by patching `previous` where that is cheaper.

    A gossip peer builds a view of every member for each request it places, mostly of the
    NodeView objects it saw last time (a simulated peer's are shared per record version,
    daemons/sim/peer.py RecordCache): when `nodes` names the same nodes as `previous` and at
    most `most` of them are other objects, only those are patched into the indices
    (`with_node`'s rule). Equal to a full build either way, the order of `nodes` included
    (tests/policy/test_view_patch.py).
    """
    if previous is None or len(nodes) != len(previous.nodes):
        return ClusterView.build(nodes)
    before = previous.nodes
    changed: list[tuple[NodeView, NodeView]] = []
    for n in nodes:
        old = before.get(n.name)
        if old is None:
            return ClusterView.build(nodes)  # another member set
        if old is not n:
            changed.append((old, n))
    by_name = {n.name: n for n in nodes}
    if len(changed) > most * len(nodes) or len(by_name) != len(nodes):
        return ClusterView.build(nodes)
    view = ClusterView(before, previous.holders, previous.catalog, previous.order)
    work = dict(before)  # the nodes as patched so far: the catalog patch reads the others
    for old, new in changed:
        work[new.name] = new
        view = _indices_patched(view, work, old, new, True)
    return ClusterView(by_name, view.holders, view.catalog, view.order)


def _indices_patched(view: ClusterView, nodes: Mapping[str, NodeView], old: NodeView | None, node: NodeView,
                     catalog_changed: bool) -> ClusterView:
    """`view` with `node` in place of `old` (None: new) in its indices; `nodes` holds `node`."""
    holders: dict[str, tuple[str, ...]] | None = None  # copied on the first change
    touched = {*node.models, *node.pending_models}
    if old is not None:
        touched.update(old.models, old.pending_models)
    name, alive = node.name, node.alive
    for model in touched:
        current = view.holders.get(model, ())
        want = alive and node.has_model(model)
        if want == (name in current):
            continue  # most states leave every holder list as it was
        if holders is None:
            holders = dict(view.holders)
        names = list(current)
        if want:
            insort(names, name)
        else:
            names.remove(name)
        if names:
            holders[model] = tuple(names)
        else:
            del holders[model]
    order = view.order
    if old is None or old.alive != alive:
        order = _order_with(order, name, alive)
    catalog = view.catalog.patched(nodes, old, node, catalog_changed)
    return ClusterView(nodes, view.holders if holders is None else holders, catalog, order, view.cursor)


def _order_with(order: tuple[str, ...], name: str, alive: bool) -> tuple[str, ...]:
    """The sorted alive names with `name` in (alive) or out."""
    names = list(order)
    if alive and name not in order:
        insort(names, name)
    elif not alive and name in order:
        names.remove(name)
    else:
        return order
    return tuple(names)


def with_placement(view: ClusterView, decision: Decision, model: str) -> ClusterView:
    """The view after sending `decision` for `model`: one more pending request on its node.

    Cheap on purpose (one node and at most one index entry are rebuilt, with plain
    constructors: `dataclasses.replace` costs several times more) because the coordinator
    applies it after every decision.
    """
    node = view.nodes.get(decision.node)
    if node is None:
        return ClusterView(view.nodes, view.holders, view.catalog, view.order,
                           view.cursor + 1)
    updated = node.with_pending(model)
    nodes = dict(view.nodes)
    nodes[node.name] = updated
    holders = view.holders
    current = holders.get(model, ())
    if updated.alive and node.name not in current and updated.has_model(model):
        holders = dict(holders)
        holders[model] = tuple(sorted((*current, node.name)))
    return _new_view(nodes, holders, view.catalog, view.order, view.cursor + 1)


_new_view = positional(ClusterView)  # ClusterView(...) with every field, at half the cost (slotted.py)


def _alive_order(nodes: Mapping[str, NodeView]) -> tuple[str, ...]:
    return tuple(sorted(name for name, n in nodes.items() if n.alive))


# ----- from a node's published state ---------------------------------------------------
def catalog_items(s: NodeState) -> dict[str, CatalogItem]:
    """The models a node can load, from its published state, indexed by name."""
    return {c.model: CatalogItem(c.model, c.footprint_bytes, c.load_s) for c in s.catalog}


def node_view(s: NodeState, alive: bool, pending: list[str],
              catalog: dict[str, CatalogItem] | None = None) -> NodeView:
    """What a policy sees of a node's published state, plus our placements it does not show yet.

    Shared by the coordinator and gossip peers; pass `catalog` when it is kept indexed already.
    """
    models = {m.model: LoadedModel(m.model, m.state, m.queue_depth, m.running, m.memory_bytes, m.last_used)
              for m in s.models}
    if catalog is None:
        catalog = catalog_items(s)
    return NodeView(s.node, s.endpoint, alive, models, s.queue_depth, s.in_flight, len(pending),
                    frozenset(pending), sum(g.memory_total for g in s.gpus), sum(g.memory_used for g in s.gpus),
                    catalog, {int(p): n for p, n in s.waiting_by_priority.items() if p.lstrip("-").isdigit()},
                    {e.model: Estimate(e.ttft_s, e.tpot_s, e.load_s, e.requests, e.tpots, e.loads)
                     for e in s.estimates} if s.estimates else {})
