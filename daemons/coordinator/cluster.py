"""The coordinator's book of nodes: state ingestion, failure detection, pending placements.

Ordering. A node's `gen` is a boot nonce (random, not ordered) and `seq` increases within
one generation. So:
- a frame of the current gen is taken only if its seq is higher (PUB/SUB over one TCP
  connection does not reorder, but a node that reconnects may repeat itself);
- a gen never seen for this name is a restart: the old state and its pending placements
  are dropped, the old gen is retired, a `node_restarted` event goes out;
- a frame of a retired gen is a late frame of a previous life and is dropped, so an old
  incarnation can never overwrite the new one.

Liveness. A node not heard from for `dead_after_s` is dead (`node_dead`); policies never
see it as a candidate. A later frame of the same gen brings it back (`node_recovered`), a
new gen is a restart. Dead nodes stay in the book (and in `schedctl status`) so an
operator sees them, for `reap_after_s`; then they are forgotten (`node_reaped`).

Bounds. The book holds at most `max_nodes` names (far above any real cluster): when it is
full, the dead are reaped early, and a new name beyond that is refused (counted in
`refused_nodes`, logged at a bounded rate), so a stream of forged names cannot grow the
coordinator's memory. Status rows are cut to `STATUS_BUDGET_BYTES` so the reply stays
under the frame limit at the cap; `status_page` says how many were left out.

Pending. Every placement is remembered with its time. When a node's state arrives, the
placements older than `settle_s` are assumed to be reflected in it and are forgotten; the
rest keep counting as load. That is the optimistic update that prevents herding.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from daemons.bus.status import fit_rows
from daemons.core.messages import STATUS_BUDGET_BYTES, NodeState
from daemons.policy import CatalogItem, ClusterView, Decision, NodeView, with_placement
from daemons.policy.view import catalog_items, node_view, with_node

log = logging.getLogger("schedctl.coordinator")

RETIRED_GENS = 8  # previous lives remembered per node name
MAX_NODES = 10_000
REAP_AFTER_S = 600.0

Event = tuple[str, str, str]  # (kind, node, detail)


@dataclass
class NodeRecord:
    state: NodeState
    heard: float  # our monotonic clock when its last accepted state arrived
    alive: bool = True
    retired: deque[int] = field(default_factory=lambda: deque(maxlen=RETIRED_GENS))
    pending: deque[tuple[float, str]] = field(default_factory=deque)  # (placed at, model)
    catalog: dict[str, CatalogItem] = field(default_factory=dict)  # state.catalog, indexed

    def settle(self, now: float, settle_s: float) -> None:
        horizon = now - settle_s
        while self.pending and self.pending[0][0] < horizon:
            self.pending.popleft()

    def set_state(self, state: NodeState, now: float) -> bool:
        """Take a newer state; True if its catalog differs from the previous one."""
        # The decoder hands out the same entries for an unchanged catalog (schema.Memo), so
        # this compares identical objects, not 20 dataclasses field by field.
        changed = not self.catalog or state.catalog != self.state.catalog
        if changed:
            self.catalog = catalog_items(state)
        self.state, self.heard = state, now
        return changed

    def view(self) -> NodeView:
        return node_view(self.state, self.alive, [m for _, m in self.pending], self.catalog)


class ClusterBook:
    """Every node the coordinator has heard of, and the ClusterView policies decide on.

    The view is kept current by patching one node at a time (`with_node`,
    `with_placement`): with 100 nodes publishing several times a second, rebuilding it
    from scratch on every state would cost more than the decisions themselves.
    """

    def __init__(self, dead_after_s: float, settle_s: float, max_nodes: int = MAX_NODES,
                 reap_after_s: float = REAP_AFTER_S) -> None:
        self.dead_after_s = dead_after_s
        self.settle_s = settle_s
        self.max_nodes = max_nodes
        self.reap_after_s = reap_after_s
        self.records: dict[str, NodeRecord] = {}
        self._view = ClusterView.build([])
        self.stale_frames = 0
        self.refused_nodes = 0

    # ----- ingestion ------------------------------------------------------------------
    def ingest(self, state: NodeState, now: float) -> list[Event]:
        """Take a node's published state; return the events it causes."""
        rec = self.records.get(state.node)
        if rec is None:
            reaped = self._reap(now, 0.0) if len(self.records) >= self.max_nodes else []
            if len(self.records) >= self.max_nodes:
                self.refused_nodes += 1
                log.warning("node table full (%d nodes, max_nodes): state of a new node refused", self.max_nodes,
                            extra={"SCHEDCTL_CAUSE": "node-table-full"})
                return reaped
            rec = self.records[state.node] = NodeRecord(state, now)
            rec.set_state(state, now)
            self._refresh(rec, catalog_changed=True)
            return [*reaped, ("node_joined", state.node, f"endpoint {state.endpoint} gen {state.gen}")]
        if state.gen == rec.state.gen:
            return self._same_gen(rec, state, now)
        if state.gen in rec.retired:
            self.stale_frames += 1
            return []  # a late frame from a previous life of this node
        return self._restart(rec, state, now)

    def _same_gen(self, rec: NodeRecord, state: NodeState, now: float) -> list[Event]:
        if state.seq <= rec.state.seq:
            self.stale_frames += 1
            return []
        events: list[Event] = []
        if not rec.alive:
            silent = now - rec.heard
            events.append(("node_recovered", state.node, f"heard again after {silent:.1f} s"))
            rec.alive = True
        changed = rec.set_state(state, now)
        rec.settle(now, self.settle_s)
        self._refresh(rec, changed)
        return events

    def _restart(self, rec: NodeRecord, state: NodeState, now: float) -> list[Event]:
        old = rec.state.gen
        rec.retired.append(old)
        rec.alive = True
        rec.pending.clear()  # the old life's queue is gone, and so is what we sent it
        self._refresh(rec, rec.set_state(state, now))
        return [("node_restarted", state.node, f"gen {old} -> {state.gen}")]

    def _refresh(self, rec: NodeRecord, catalog_changed: bool) -> None:
        self._view = with_node(self._view, rec.view(), catalog_changed)

    # ----- failure detection -------------------------------------------------------------
    def expire(self, now: float) -> list[Event]:
        """Declare dead the nodes silent for longer than dead_after_s."""
        events: list[Event] = []
        for name, rec in self.records.items():
            silent = now - rec.heard
            if rec.alive and silent > self.dead_after_s:
                rec.alive = False
                rec.pending.clear()
                self._refresh(rec, catalog_changed=True)
                events.append(("node_dead", name, f"silent for {silent:.1f} s (limit {self.dead_after_s} s)"))
        return events + self._reap(now, self.reap_after_s)

    def _reap(self, now: float, after_s: float) -> list[Event]:
        """Forget the nodes dead and silent for longer than `after_s`."""
        gone = [name for name, r in self.records.items()
                if not r.alive and now - r.heard > max(after_s, self.dead_after_s)]
        if not gone:
            return []
        for name in gone:
            del self.records[name]
        # Rare (once per reaped batch): rebuild rather than teach the view to forget a node.
        self._view = ClusterView.build([r.view() for r in self.records.values()], self._view.cursor)
        return [("node_reaped", name, f"dead for more than {after_s:g} s") for name in gone]

    # ----- decisions ----------------------------------------------------------------------
    def view(self) -> ClusterView:
        return self._view

    def placed(self, decision: Decision, model: str, now: float) -> None:
        """Count a placement as pending on its node until the node's state shows it."""
        self._view = with_placement(self._view, decision, model)
        rec = self.records.get(decision.node)
        if rec is not None:
            rec.pending.append((now, model))

    # ----- status ---------------------------------------------------------------------------
    def alive_count(self) -> int:
        return sum(1 for r in self.records.values() if r.alive)

    def alive_endpoints(self) -> dict[str, str]:
        """Name -> request endpoint of every node alive in this view."""
        return {name: r.state.endpoint for name, r in self.records.items() if r.alive and r.state.endpoint}

    def status_rows(self, now: float) -> list[dict[str, Any]]:
        """One row per node for StatusReply, sorted by name (cut to the reply's budget)."""
        return self.status_page(now)[0]

    def status_page(self, now: float, budget: int = STATUS_BUDGET_BYTES) -> tuple[list[dict[str, Any]], int]:
        """Status rows, alive nodes first, as many as fit `budget` bytes packed (then sorted
        by name); and how many were left out."""
        ordered = sorted(self.records.items(), key=lambda kv: (not kv[1].alive, kv[0]))
        rows, omitted = fit_rows([_row(rec, now) for _, rec in ordered], budget)
        return sorted(rows, key=lambda r: str(r["node"])), omitted


def _row(rec: NodeRecord, now: float) -> dict[str, Any]:
    s = rec.state
    return {
        "node": s.node,
        "endpoint": s.endpoint,
        "alive": rec.alive,
        "gen": s.gen,
        "seq": s.seq,
        "last_heard_s": round(now - rec.heard, 3),
        "queue_depth": s.queue_depth,
        "in_flight": s.in_flight,
        "pending": len(rec.pending),
        "memory_used": sum(g.memory_used for g in s.gpus),
        "memory_total": sum(g.memory_total for g in s.gpus),
        "gpus": len(s.gpus),
        "gpu_backend": s.gpu_backend,
        "models": [{"model": m.model, "state": m.state, "queue_depth": m.queue_depth,
                    "running": m.running, "memory_bytes": m.memory_bytes} for m in s.models],
    }
