"""The periodic rebalancer: which running requests to move, Llumnix-style pair migration.

Llumnix (Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving",
OSDI'24, arXiv 2406.03243, §4.4; code: AlibabaPAI/llumnix `llumnix/global_scheduler/
migration_policy.py`, pair migration "balanced") moves requests between instances
continuously: every period it sorts the candidate sources by load, most loaded first, and
the destinations least loaded first, pairs the i-th source with the i-th destination, and
migrates when the move narrows the pair's gap (0 < gap after < gap before) and the
destination stays under its threshold. One request per pair and period (its
`--max-migration-concurrency` 1).

Load here is a node's requests (`NodeView.load`: held, plus placements it has not reported
yet); moving one changes the gap by two, so a pair migrates when its gap is at least 3.
The destination must have the request's model loaded and ready: a move never waits for a
load (that is a cold start's business). Which request moves the source decides (the
shortest running of that model: daemons/node/migration.py `pick`).

Pure: a function of the view; the coordinator runs it every REBALANCE_EVERY_S and sends
each `Move` to its source as a `Migrate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from daemons.policy.view import ClusterView, NodeView

REBALANCE_EVERY_S = 1.0  # Llumnix's pair migration period (and ServerlessLLM's control loop)
# A destination is taken only while it would hold at most this many requests after the move
# (Llumnix's --migrate-out-threshold plays this part in its own load unit; ours is requests).
DEFAULT_THRESHOLD = 8


@dataclass(frozen=True, slots=True)
class Move:
    """Move one running request of `model` from `source` to `destination`."""

    source: str
    source_endpoint: str
    destination: str
    destination_endpoint: str
    model: str
    reason: str


def rebalance(view: ClusterView, threshold: int = DEFAULT_THRESHOLD,
              busy: Iterable[str] = ()) -> list[Move]:
    """The moves of one period; `busy` nodes (a move of theirs still under way) sit it out."""
    skip = set(busy)
    nodes = [n for n in view.alive() if n.name not in skip]
    sources = sorted(nodes, key=lambda n: (-n.load, n.name))
    destinations = sorted(nodes, key=lambda n: (n.load, n.name))
    moves: list[Move] = []
    for src, dst in zip(sources, destinations, strict=True):
        before = src.load - dst.load
        if before <= 0:
            break  # the pairs have crossed: every node left is as loaded as its partner
        after = (src.load - 1) - (dst.load + 1)
        if not 0 < after < before or dst.load + 1 > threshold:
            continue
        model = _shared_model(src, dst)
        if model:
            moves.append(Move(src.name, src.endpoint, dst.name, dst.endpoint, model,
                              f"rebalance: load {src.load} vs {dst.load}"))
    return moves


def _shared_model(src: NodeView, dst: NodeView) -> str:
    """A model running on `src` and ready on `dst` (the one with most running requests)."""
    running = [(m.running, name) for name, m in src.models.items() if m.running > 0 and dst.is_ready(name)]
    return max(running)[1] if running else ""
