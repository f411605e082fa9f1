"""nodes.csv: every node's telemetry, one row per node per second of the run.

Written by the experiment's collector (cli/experiment/collector.py) from the nodes'
NodeState; times are seconds from the load generator's t = 0. Memory is in bytes summed
over the node's GPUs; `memory_utilization` is their ratio (0..1); `loaded_models` lists the
models ready on the node; `alive` is 0 once the node has been silent for the collector's
SILENT_AFTER_S; `gpu_utilization` is the compute utilisation (0..1: NVML's
utilization.gpu, or the emulator's busy fraction of engine steps), empty when the node
does not report it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemons.core.messages import NodeState
from daemons.rundir.cells import NAN, Row, read_rows, write_rows

NODES = "nodes.csv"

NODE_COLUMNS = ("t_s", "node", "memory_used", "memory_total", "memory_utilization", "queue_depth",
                "in_flight", "loaded_models", "alive", "gpu_utilization")
NODE_REQUIRED = ("t_s", "node", "memory_utilization", "queue_depth")


@dataclass(frozen=True)
class NodeSample:
    """One node's telemetry at one second (NaN or None: not known)."""

    t_s: float
    node: str
    memory_utilization: float  # 0..1
    queue_depth: float
    alive: bool = True
    gpu_utilization: float = NAN  # 0..1 compute; NaN when not measured
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    in_flight: float = NAN
    loaded_models: tuple[str, ...] = ()


def state_sample(t_s: float, state: NodeState, alive: bool) -> NodeSample:
    """A node's row at `t_s` from its latest NodeState (the real and the simulated collector)."""
    used = sum(g.memory_used for g in state.gpus)
    total = sum(g.memory_total for g in state.gpus)
    return NodeSample(
        t_s=t_s, node=state.node, memory_used=used, memory_total=total,
        memory_utilization=round(used / total, 4) if total else 0.0, queue_depth=state.queue_depth,
        in_flight=state.in_flight, loaded_models=tuple(m.model for m in state.models if m.state == "ready"),
        alive=alive, gpu_utilization=math.nan if state.gpu_utilization is None else state.gpu_utilization)


def write_nodes(path: str | Path, samples: Iterable[NodeSample]) -> None:
    """Write nodes.csv (NODE_COLUMNS) at `path`."""
    write_rows(path, NODE_COLUMNS, samples)


def read_nodes(path: Path) -> list[NodeSample]:
    """Read nodes.csv in file order; only NODE_REQUIRED columns must be present."""
    return [_sample(row) for row in read_rows(path, NODE_REQUIRED)]


def _sample(row: Row) -> NodeSample:
    used, total = row.count("memory_used"), row.count("memory_total")
    util = row.number("memory_utilization")
    if math.isnan(util) and used is not None and total:  # a writer may give only the bytes
        util = used / total
    return NodeSample(
        t_s=row.number("t_s", required=True),
        node=row.text("node"),
        memory_utilization=util,
        queue_depth=row.number("queue_depth"),
        alive=row.flag("alive", default=True),
        gpu_utilization=row.number("gpu_utilization"),
        memory_used=used,
        memory_total=total,
        in_flight=row.number("in_flight"),
        loaded_models=row.items("loaded_models"),
    )
