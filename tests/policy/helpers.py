"""Small builders for policy tests: nodes in GiB, models by name."""

from __future__ import annotations

from daemons.policy import CatalogItem, ClusterView, LoadedModel, NodeView

GIB = 1 << 30


def catalog(*models: str, gib: int = 16, load_s: float = 5.0) -> dict[str, CatalogItem]:
    return {m: CatalogItem(m, gib * GIB, load_s) for m in models}


def node(name: str, loaded: dict[str, LoadedModel] | None = None, *, total_gib: int = 80,
         queue: int = 0, alive: bool = True, cat: dict[str, CatalogItem] | None = None,
         in_flight: int = 0, pending: int = 0, extra_used_gib: int = 0) -> NodeView:
    loaded = loaded or {}
    used = sum(m.memory_bytes for m in loaded.values()) + extra_used_gib * GIB
    return NodeView(name, f"tcp://{name}:5560", alive, loaded, queue, in_flight,
                    pending, frozenset(), total_gib * GIB, used,
                    cat if cat is not None else catalog("m1", "m2", "m3"))


def ready(model: str, gib: int = 16, *, running: int = 0, queue: int = 0, last_used: float = 0.0,
          state: str = "ready") -> dict[str, LoadedModel]:
    return {model: LoadedModel(model, state, queue, running, gib * GIB, last_used)}


def view(*nodes: NodeView, cursor: int = 0) -> ClusterView:
    return ClusterView.build(nodes, cursor)
