"""Status replies cut to the frame limit: their size is measured in packed msgpack bytes."""

from __future__ import annotations

from typing import Any

import msgpack

from daemons.core.messages import STATUS_BUDGET_BYTES, StatusReply


def fit_rows(rows: list[dict[str, Any]], budget: int = STATUS_BUDGET_BYTES) -> tuple[list[dict[str, Any]], int]:
    """The leading `rows` whose packed size fits `budget`, and how many were left out: a
    status reply stays under the frame limit at any cluster size. Order rows by priority."""
    used = 0
    for i, row in enumerate(rows):
        used += len(msgpack.packb(row))
        if used > budget:
            return rows[:i], len(rows) - i
    return rows, 0


def status_reply(role: str, rows: list[dict[str, Any]], info: dict[str, Any]) -> StatusReply:
    """A StatusReply cut to its budget; `info["omitted_nodes"]` says how many rows did not fit."""
    kept, omitted = fit_rows(rows)
    return StatusReply(role, kept, {**info, "omitted_nodes": omitted} if omitted else info)


def live_nodes_seen(reply: StatusReply) -> int:
    """How many live nodes a scheduler's status lists with an endpoint (a coordinator's nodes,
    a gossip peer's members; 0 for a node agent's own reply): a cluster is ready to take
    requests once its scheduler has heard from every node it was started or deployed with."""
    if reply.role not in ("coordinator", "gossip-peer"):
        return 0
    return sum(1 for n in reply.nodes if n.get("alive") and n.get("endpoint"))
