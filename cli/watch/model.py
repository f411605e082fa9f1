"""What `schedctl watch` shows, folded from what the cluster already says: no terminal, no sockets.

Sans-IO: the sources (sources.py) hand in observations with the time they were made (Unix
seconds), and `snapshot(now)` folds them into the screen's content, so every rule here is
tested by feeding observations (tests/watch/test_model.py). Observations:

- `status(kind, name, reply, now)`: a daemon's StatusReply (None: it did not answer). A
  node's own reply (a node agent's NodeState row, or a gossip peer's own gossiped record)
  gives its row; a gossip peer's reply also gives its membership view; a coordinator's
  gives its role, Binary Star state and epoch.
- `event(Event)`: a fault, verdict, detection or ClusterEvent (the runner's journal, or a
  coordinator's events PUB).
- `request(t, row, arm)`: one finished request of the load generator (its requests.csv row).

Some events are the watch's own, from differences between what the cluster said: a node's
loads started, finished and failed and its evictions (its models between two answers), a
request's cold start or migration (the action its node reported), and a coordinator's
change of state or epoch (a failover, as its answers show it).

A daemon that has not answered for DEAD_AFTER_S is "dead": the screen turns its row red.
Request figures are over the last WINDOW_S seconds of finishes, by the report's own rules
(cli/report/summary.py: tpot_s, meets_slo), and sparklines over the last HISTORY_S seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cli.report.summary import is_fault, meets_slo, tpot_s
from cli.status import row_memory
from daemons.core.messages import StatusReply
from daemons.rundir import Event, RequestRow, Slo
from daemons.rundir.requests import NOT_SENT

DEAD_AFTER_S = 3.0  # three missed status answers (asked once a second)
WINDOW_S = 10.0  # rolling request figures, the window recovery.py judges recovery on
HISTORY_S = 60  # sparkline length, one point a second
EVENTS_KEPT = 500


@dataclass(frozen=True)
class NodeView:
    """One node's row."""

    name: str
    state: str  # alive | dead | unknown (never answered)
    memory_used: int | None = None  # bytes over its GPUs
    memory_total: int | None = None
    gpu_utilization: float | None = None  # 0..1 compute
    queue_depth: int | None = None
    in_flight: int | None = None
    ready: tuple[str, ...] = ()
    loading: tuple[str, ...] = ()
    heard_s_ago: float | None = None  # since its last answer to us

    @property
    def memory_fraction(self) -> float | None:
        return None if not self.memory_total else (self.memory_used or 0) / self.memory_total


@dataclass(frozen=True)
class CoordinatorView:
    """One coordinator of the (failover) pair."""

    name: str
    answering: bool
    role: str = "-"  # primary | backup | standalone (configured)
    state: str = "-"  # active | passive | primary | backup (now)
    epoch: int | None = None
    decisions_per_s: float = 0.0  # placements by it among the last window's finished requests
    heard_s_ago: float | None = None


@dataclass(frozen=True)
class PeerView:
    """One gossip peer's membership view."""

    observer: str
    alive: int
    suspect: int
    dead: int
    ages: dict[str, float]  # member -> age of its record, as the observer holds it (s)
    answering: bool = True  # False: the observer itself is silent, this view is its last


@dataclass(frozen=True)
class ArmFigures:
    """Rolling request figures of one arm (scheduler) of the run."""

    arm: str
    finished: int  # in the window
    rate: float  # finished requests / s
    success: float  # ok / finished (NaN: none finished)
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_ms: float  # mean over the window's successes
    goodput: float  # requests / s meeting every SLO (NaN: no SLO)
    total: int  # finished since the watch began
    rate_history: tuple[float, ...]  # per second, oldest first
    ttft_history: tuple[float, ...]  # p50 per second (ms; 0 where nothing succeeded)


@dataclass(frozen=True)
class Snapshot:
    nodes: tuple[NodeView, ...]
    coordinators: tuple[CoordinatorView, ...]
    peers: tuple[PeerView, ...]
    arms: tuple[ArmFigures, ...]
    events: tuple[Event, ...]  # oldest first


@dataclass
class _Source:
    reply: StatusReply | None = None
    answered_at: float | None = None


@dataclass
class WatchModel:
    """Everything seen so far; `snapshot(now)` is the screen."""

    nodes: Sequence[str] = ()  # expected nodes (listed before they first answer)
    coordinators: Sequence[str] = ()
    slo: Slo = field(default_factory=Slo)
    _nodes: dict[str, _Source] = field(default_factory=dict)
    _coordinators: dict[str, _Source] = field(default_factory=dict)
    _events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    _requests: dict[str, deque[tuple[float, RequestRow]]] = field(default_factory=dict)
    _totals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.nodes:
            self._nodes.setdefault(name, _Source())
        for name in self.coordinators:
            self._coordinators.setdefault(name, _Source())

    def carry_from(self, other: WatchModel) -> None:
        """Keep `other`'s request figures and events (the run's previous arm) on this screen."""
        self._events.extend(other._events)
        self._requests.update(other._requests)
        self._totals.update(other._totals)

    # ----- observations -------------------------------------------------------------------
    def status(self, kind: str, name: str, reply: StatusReply | None, now: float) -> None:
        """`kind`: "node" or "coordinator"; `reply` None: asked, no answer."""
        book = self._nodes if kind == "node" else self._coordinators
        source = book.setdefault(name, _Source())
        if reply is None:
            return
        changes = (_model_changes(name, _own_models(source.reply, name), _own_models(reply, name)) if kind == "node"
                   else _coordinator_changes(name, source.reply, reply))
        if source.reply is not None:  # the first answer is where we start, not a change
            self._events.extend(Event(now, kind_, target, detail) for kind_, target, detail in changes)
        source.reply, source.answered_at = reply, now

    def event(self, event: Event) -> None:
        self._events.append(event)

    def request(self, t: float, row: RequestRow, arm: str) -> None:
        if row.status == NOT_SENT:
            return  # never sent: not a figure of the system under test
        self._requests.setdefault(arm, deque()).append((t, row))
        if row.action in ("COLD_START", "MIGRATE"):  # what the node did for it (its Done)
            self._events.append(Event(t, row.action.lower(), row.node, f"model={row.model};request={row.request_id}"))
        self._totals[arm] = self._totals.get(arm, 0) + 1

    # ----- the screen ---------------------------------------------------------------------
    def snapshot(self, now: float) -> Snapshot:
        for rows in self._requests.values():  # keep what the sparklines still show
            while rows and rows[0][0] < now - HISTORY_S - 1:
                rows.popleft()
        return Snapshot(
            nodes=tuple(self._node_view(name, src, now) for name, src in sorted(self._nodes.items())),
            coordinators=tuple(self._coordinator_view(name, src, now) for name, src in self._coordinators.items()),
            peers=tuple(p for name, src in sorted(self._nodes.items())
                        if (p := _peer_view(name, src, now)) is not None),
            arms=tuple(self._arm(arm, rows, now) for arm, rows in self._requests.items()),
            events=tuple(sorted(self._events, key=lambda e: e.t_s)),
        )

    def _node_view(self, name: str, src: _Source, now: float) -> NodeView:
        """From the node's own answer; a node that never answered us, from a coordinator's view of it."""
        if src.reply is not None and src.answered_at is not None:
            ago = now - src.answered_at
            row = next((r for r in src.reply.nodes if r.get("node") == name), {})
            return _node_row(name, "dead" if ago >= DEAD_AFTER_S else "alive", row, ago)
        for coordinator in self._coordinators.values():
            if coordinator.reply is None or coordinator.answered_at is None:
                continue
            seen = next((r for r in coordinator.reply.nodes if r.get("node") == name), None)
            if seen is not None:
                heard = _number(seen.get("last_heard_s"))
                since = None if heard is None else heard + now - coordinator.answered_at
                return _node_row(name, "alive" if seen.get("alive", True) else "dead", seen, since)
        return NodeView(name, "unknown")

    def _coordinator_view(self, name: str, src: _Source, now: float) -> CoordinatorView:
        decided = sum(1 for rows in self._requests.values() for t, r in rows
                      if r.coordinator == name and t > now - WINDOW_S)
        if src.reply is None or src.answered_at is None:
            return CoordinatorView(name, False, decisions_per_s=decided / WINDOW_S)
        info, ago = src.reply.info, now - src.answered_at
        return CoordinatorView(name, ago < DEAD_AFTER_S, str(info.get("role", "standalone")),
                               str(info.get("state", "active")), _count(info.get("epoch")), decided / WINDOW_S, ago)

    def _arm(self, arm: str, rows: deque[tuple[float, RequestRow]], now: float) -> ArmFigures:
        recent = [r for t, r in rows if t > now - WINDOW_S]
        ok = [r for r in recent if r.ok]
        ttfts = [1000 * r.ttft_s for r in ok if math.isfinite(r.ttft_s)]
        tpots = [1000 * tpot_s(r) for r in ok if (r.tokens or 0) > 1]
        good = sum(1 for r in ok if meets_slo(r, self.slo))
        rate_hist, ttft_hist = _history(rows, now)
        return ArmFigures(
            arm, len(recent), len(recent) / WINDOW_S, len(ok) / len(recent) if recent else math.nan,
            _percentile(ttfts, 50), _percentile(ttfts, 99), sum(tpots) / len(tpots) if tpots else math.nan,
            good / WINDOW_S if self.slo.configured else math.nan, self._totals.get(arm, 0), rate_hist, ttft_hist)


def _own_models(reply: StatusReply | None, name: str) -> dict[str, str]:
    """model -> state in a node's own row of its reply ({} without one)."""
    row = next((r for r in reply.nodes if r.get("node") == name), {}) if reply is not None else {}
    return {str(m.get("model")): str(m.get("state")) for m in row.get("models") or [] if isinstance(m, dict)}


def _model_changes(node: str, before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """Loads started and finished, failed loads and evictions between two answers of a node."""
    changes = []
    for model in sorted(before.keys() | after.keys()):
        was, now = before.get(model), after.get(model)
        if was == now:
            continue
        if now == "loading":
            kind = "load_started"
        elif now == "ready":
            kind = "loaded"
        elif now == "failed":
            kind = "load_failed"
        elif was == "ready" or now == "evicting":
            kind = "evicted"
        else:
            continue  # a load that vanished between two answers: no state to name
        changes.append((kind, node, f"model={model}"))
    return changes


def _coordinator_changes(name: str, before: StatusReply | None, after: StatusReply) -> list[tuple[str, str, str]]:
    """A coordinator whose Binary Star state or epoch changed (a failover, seen from its answers)."""
    if before is None:
        return []
    was, now = before.info, after.info
    if (was.get("state"), was.get("epoch")) == (now.get("state"), now.get("epoch")):
        return []
    return [("coordinator_state", name, f"{was.get('state')} -> {now.get('state')};epoch={now.get('epoch')}")]


def _node_row(name: str, state: str, row: dict[str, Any], heard_s_ago: float | None) -> NodeView:
    models = [m for m in row.get("models") or [] if isinstance(m, dict)]
    used, total = row_memory(row)
    return NodeView(
        name, state, used, total, _number(row.get("gpu_utilization")), _count(row.get("queue_depth")),
        _count(row.get("in_flight")), tuple(str(m.get("model")) for m in models if m.get("state") == "ready"),
        tuple(str(m.get("model")) for m in models if m.get("state") == "loading"), heard_s_ago)


def _peer_view(name: str, src: _Source, now: float) -> PeerView | None:
    if src.reply is None or src.answered_at is None or src.reply.role != "gossip-peer":
        return None
    members = [r for r in src.reply.nodes if r.get("node") != name]
    states = [str(r.get("status", "alive")) for r in members]
    ages = {str(r.get("node")): float(r["record_age_s"]) for r in members
            if isinstance(r.get("record_age_s"), int | float)}
    return PeerView(name, states.count("alive"), states.count("suspect"), states.count("dead"), ages,
                    now - src.answered_at < DEAD_AFTER_S)


def _history(rows: deque[tuple[float, RequestRow]], now: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per whole second of the last HISTORY_S: finished requests, and the successes' TTFT p50 (ms)."""
    counts = [0.0] * HISTORY_S
    ttfts: list[list[float]] = [[] for _ in range(HISTORY_S)]
    for t, r in rows:
        slot = HISTORY_S - 1 - int(now - t)
        if 0 <= slot < HISTORY_S:
            counts[slot] += 1
            if r.ok and math.isfinite(r.ttft_s):
                ttfts[slot].append(1000 * r.ttft_s)
    return tuple(counts), tuple(_percentile(v, 50) if v else 0.0 for v in ttfts)


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def severity(event: Event) -> str:
    """How the event log colours an event: fault, bad (a node or coordinator lost), good, info."""
    if is_fault(event):
        return "fault"
    if event.kind in ("dead", "node_dead", "silent", "suspect", "coordinator_silent", "failover", "takeover",
                      "load_failed", "coordinator_state"):
        return "bad"
    if event.kind in ("alive", "node_recovered", "heard_again", "coordinator_heard_again", "resumed", "healed",
                      "started_again", "node_restarted"):
        return "good"
    return "info"
