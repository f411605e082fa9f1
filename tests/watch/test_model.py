"""The watch's model: observations in, the screen's content out (no terminal, no sockets)."""

from __future__ import annotations

import math

import pytest

from cli.watch.model import DEAD_AFTER_S, HISTORY_S, WINDOW_S, WatchModel, severity
from daemons.core.messages import StatusReply
from daemons.rundir import Event, RequestRow, Slo

GIB = 1 << 30
T0 = 1_700_000_000.0


def node_reply(name: str, used: int = 20 * GIB, queue: int = 2, loading: bool = False) -> StatusReply:
    models = [{"model": "opt", "state": "ready", "queue_depth": 0, "running": 1},
              {"model": "llama", "state": "loading" if loading else "ready", "queue_depth": 1, "running": 0}]
    row = {"node": name, "gpus": [{"index": 0, "name": "A100", "memory_total": 80 * GIB, "memory_used": used}],
           "models": models, "queue_depth": queue, "in_flight": 1, "gpu_utilization": 0.5}
    return StatusReply("node", [row], {"epoch": 0})


def coordinator_reply(rows: list[dict[str, object]], state: str = "active", epoch: int = 3) -> StatusReply:
    return StatusReply("coordinator", rows, {"name": "coordinator", "role": "primary", "state": state, "epoch": epoch})


def ok(rid: str, sched: float, ttft: float, latency: float, tokens: int, coordinator: str = "") -> RequestRow:
    return RequestRow(rid, sched, first_token_s=sched + ttft, done_s=sched + latency, tokens=tokens, status="ok",
                      coordinator=coordinator)


def test_a_node_that_answers_is_alive_with_what_it_said() -> None:
    model = WatchModel(nodes=["node-0"])
    model.status("node", "node-0", node_reply("node-0", loading=True), T0)
    (node,) = model.snapshot(T0 + 0.5).nodes
    assert (node.state, node.memory_used, node.memory_total, node.gpu_utilization) == ("alive", 20 * GIB, 80 * GIB, 0.5)
    assert (node.queue_depth, node.in_flight, node.ready, node.loading) == (2, 1, ("opt",), ("llama",))
    assert node.memory_fraction == 0.25 and node.heard_s_ago == 0.5


def test_a_node_silent_for_the_limit_turns_dead_and_keeps_its_last_figures() -> None:
    model = WatchModel(nodes=["node-0"])
    model.status("node", "node-0", node_reply("node-0"), T0)
    model.status("node", "node-0", None, T0 + 1)  # asked, no answer
    assert model.snapshot(T0 + DEAD_AFTER_S - 0.1).nodes[0].state == "alive"
    dead = model.snapshot(T0 + DEAD_AFTER_S).nodes[0]
    assert dead.state == "dead" and dead.queue_depth == 2 and dead.heard_s_ago == DEAD_AFTER_S
    model.status("node", "node-0", node_reply("node-0", queue=0), T0 + 10)  # back
    assert model.snapshot(T0 + 10).nodes[0].state == "alive"


def test_a_node_never_heard_is_unknown_unless_a_coordinator_knows_it() -> None:
    model = WatchModel(nodes=["node-0", "node-1"], coordinators=["coordinator"])
    assert [n.state for n in model.snapshot(T0).nodes] == ["unknown", "unknown"]
    rows: list[dict[str, object]] = [{"node": "node-1", "alive": False, "last_heard_s": 4.0, "queue_depth": 0,
                                      "memory_used": GIB, "memory_total": 2 * GIB}]
    model.status("coordinator", "coordinator", coordinator_reply(rows), T0)
    node0, node1 = model.snapshot(T0 + 1).nodes
    assert node0.state == "unknown"
    assert (node1.state, node1.heard_s_ago, node1.memory_fraction) == ("dead", 5.0, 0.5)


def test_the_coordinator_pair_shows_role_state_epoch_and_decisions() -> None:
    model = WatchModel(coordinators=["coordinator", "standby"])
    model.status("coordinator", "coordinator", coordinator_reply([]), T0)
    for i in range(5):
        model.request(T0 - i, ok(f"r{i}", 0, 0.1, 0.2, 2, coordinator="coordinator"), "centralized")
    model.request(T0 - 2 * WINDOW_S, ok("old", 0, 0.1, 0.2, 2, coordinator="coordinator"), "centralized")
    primary, standby = model.snapshot(T0 + 0.5).coordinators
    assert (primary.answering, primary.role, primary.state, primary.epoch) == (True, "primary", "active", 3)
    assert primary.decisions_per_s == 5 / WINDOW_S
    assert not standby.answering and standby.epoch is None
    assert not model.snapshot(T0 + DEAD_AFTER_S).coordinators[0].answering


def test_a_gossip_peer_shows_its_view_of_the_others() -> None:
    rows = [{"node": "node-0", "status": "alive", "record_age_s": 0.0},
            {"node": "node-1", "status": "suspect", "record_age_s": 2.5},
            {"node": "node-2", "status": "dead", "record_age_s": 9.0},
            {"node": "node-3", "status": "alive", "record_age_s": 0.4}]
    model = WatchModel(nodes=["node-0"])
    model.status("node", "node-0", StatusReply("gossip-peer", rows, {}), T0)
    (peer,) = model.snapshot(T0).peers
    assert (peer.observer, peer.alive, peer.suspect, peer.dead) == ("node-0", 1, 1, 1)
    assert peer.ages == {"node-1": 2.5, "node-2": 9.0, "node-3": 0.4}
    assert model.snapshot(T0).nodes[0].state == "alive" and peer.answering
    assert not model.snapshot(T0 + DEAD_AFTER_S).peers[0].answering  # its last view, kept but marked


def test_request_figures_are_over_the_last_window_by_the_reports_rules() -> None:
    model = WatchModel(slo=Slo(ttft_ms=300, tpot_ms=200))
    # ttft 0.1/0.2/0.4 s; tpot (latency - ttft) / (tokens - 1): 0.1, 0.1, 0.3 s
    for i, (ttft, latency, tokens) in enumerate([(0.1, 0.3, 3), (0.2, 0.4, 3), (0.4, 1.0, 3)]):
        model.request(T0 - i, ok(f"r{i}", 0, ttft, latency, tokens), "gossip")
    model.request(T0, RequestRow("bad", 0, status="error", error="x"), "gossip")
    model.request(T0, RequestRow("never", 0, status="not_sent"), "gossip")  # not a figure
    model.request(T0 - WINDOW_S - 1, ok("old", 0, 5, 6, 2), "gossip")  # out of the window
    (arm,) = model.snapshot(T0 + 0.5).arms
    assert (arm.arm, arm.finished, arm.total) == ("gossip", 4, 5)
    assert arm.rate == 4 / WINDOW_S and arm.success == 0.75
    assert arm.ttft_p50_ms == pytest.approx(200)
    assert arm.ttft_p99_ms == pytest.approx(200 + 200 * 0.98)  # numpy's linear rule
    assert arm.tpot_ms == pytest.approx((100 + 100 + 300) / 3)
    assert arm.goodput == 2 / WINDOW_S  # r0 and r1 meet both SLOs; r2's TTFT is 400 ms
    assert len(arm.rate_history) == HISTORY_S and sum(arm.rate_history) == 5


def test_without_an_slo_goodput_is_not_a_number_and_no_requests_no_arm() -> None:
    model = WatchModel()
    assert model.snapshot(T0).arms == ()
    model.request(T0, ok("r", 0, 0.1, 0.2, 1), "centralized")
    (arm,) = model.snapshot(T0).arms
    assert math.isnan(arm.goodput) and math.isnan(arm.tpot_ms)  # one token: no TPOT


def test_events_come_out_in_time_order_with_a_severity() -> None:
    model = WatchModel()
    for e in [Event(T0 + 2, "node_dead", "node-1"), Event(T0 + 1, "fault", "node-1", "kind=kill"),
              Event(T0 + 3, "heard_again", "node-1"), Event(T0 + 4, "cold_start", "node-0")]:
        model.event(e)
    events = model.snapshot(T0 + 5).events
    assert [e.kind for e in events] == ["fault", "node_dead", "heard_again", "cold_start"]
    assert [severity(e) for e in events] == ["fault", "bad", "good", "info"]


def test_the_next_arm_keeps_the_earlier_arms_figures_and_events() -> None:
    first = WatchModel(nodes=["node-0"])
    first.request(T0, ok("r", 0, 0.1, 0.2, 2), "centralized")
    first.event(Event(T0, "fault", "node-0"))
    second = WatchModel(nodes=["node-0", "node-1"])
    second.carry_from(first)
    second.request(T0 + 1, ok("g", 0, 0.1, 0.2, 2), "gossip")
    snap = second.snapshot(T0 + 1)
    assert [a.arm for a in snap.arms] == ["centralized", "gossip"] and len(snap.events) == 1
    assert [n.name for n in snap.nodes] == ["node-0", "node-1"]


def test_loads_evictions_cold_starts_and_failovers_are_events_of_their_own() -> None:
    model = WatchModel(nodes=["node-0"], coordinators=["coordinator"])
    model.status("node", "node-0", node_reply("node-0", loading=True), T0)  # where we start: no event
    model.status("coordinator", "coordinator", coordinator_reply([], state="passive", epoch=1), T0)
    assert model.snapshot(T0).events == ()
    model.status("node", "node-0", node_reply("node-0"), T0 + 1)  # llama loaded
    evicted = StatusReply("node", [{"node": "node-0", "models": [{"model": "llama", "state": "ready"}]}], {})
    model.status("node", "node-0", evicted, T0 + 2)  # opt gone
    model.status("node", "node-0", None, T0 + 3)  # no answer: no change
    model.status("coordinator", "coordinator", coordinator_reply([], state="active", epoch=2), T0 + 3)
    cold = RequestRow("r9", 0, model="llama", node="node-0", action="COLD_START", status="ok", done_s=1.0,
                      first_token_s=0.5)
    model.request(T0 + 4, cold, "centralized")
    seen = [(e.t_s - T0, e.kind, e.target, e.detail) for e in model.snapshot(T0 + 5).events]
    assert seen == [(1, "loaded", "node-0", "model=llama"), (2, "evicted", "node-0", "model=opt"),
                    (3, "coordinator_state", "coordinator", "passive -> active;epoch=2"),
                    (4, "cold_start", "node-0", "model=llama;request=r9")]
