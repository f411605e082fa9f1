"""startup-optimal: queue wait + load time + prefill, and MIGRATE only when it is cheapest."""

from __future__ import annotations

from random import Random

from daemons.policy import ClusterView, Decision, PlacementRequest
from daemons.policy.startup import room_moves, startup_optimal
from tests.policy.helpers import catalog, node, ready, view


def decide(v: ClusterView, prompt: int = 1000) -> Decision:
    result = startup_optimal(v, PlacementRequest("m1", prompt, 50), Random(0))
    assert isinstance(result, Decision)
    return result


def test_serves_where_ready() -> None:
    d = decide(view(node("a"), node("b", ready("m1"))))
    assert (d.node, d.action) == ("b", "SERVE")
    assert abs(d.est_wait_s - 1000 * 0.0002) < 1e-9


def test_cold_starts_on_the_node_that_loads_fastest() -> None:
    d = decide(view(node("a", cat=catalog("m1", load_s=9)), node("b", cat=catalog("m1", load_s=2)),
                    node("c", cat=catalog("m1", load_s=4))))
    assert (d.node, d.action) == ("b", "COLD_START")
    assert abs(d.est_wait_s - (2 + 0.2)) < 1e-9


def test_a_fast_cold_start_beats_a_long_queue() -> None:
    v = view(node("a", ready("m1", queue=20), queue=20), node("b", cat=catalog("m1", load_s=2)))
    assert (decide(v).node, decide(v).action) == ("b", "COLD_START")
    v = view(node("a", ready("m1", queue=2), queue=2), node("b", cat=catalog("m1", load_s=2)))
    assert (decide(v).node, decide(v).action) == ("a", "SERVE")


def test_evicting_idle_models_adds_to_the_cost() -> None:
    a = node("a", ready("m2", 70), cat=catalog("m1", "m2", load_s=2))
    b = node("b", cat=catalog("m1", load_s=2.2))
    d = decide(view(a, b))
    assert d.node == "b"  # 2.2 s beats 2 s + one eviction


def _crowded(slow_load_s: float, elsewhere: bool = True) -> ClusterView:
    # "fast" loads m1 in 1 s but is full of m2, which is running one request; m2 is also
    # ready on "spare" (so its requests can move there); "slow" could cold-start m1.
    fast = node("fast", ready("m2", 70, running=1), cat=catalog("m1", "m2", load_s=1))
    spare = node("spare", ready("m2", 16), extra_used_gib=60, cat=catalog("m2"))
    slow = node("slow", cat=catalog("m1", load_s=slow_load_s))
    return view(fast, slow, *([spare] if elsewhere else []))


def test_migrate_when_moving_running_work_frees_the_best_node_fastest() -> None:
    d = decide(_crowded(slow_load_s=30))
    assert (d.node, d.action, d.evict) == ("fast", "MIGRATE", ("m2",))
    # 1 s load + 0.5 s evict + 1·(0.01·256 + 0.1) move + 0.2 s prefill
    assert abs(d.est_wait_s - (1 + 0.5 + 2.66 + 0.2)) < 1e-9
    assert "MIGRATE" in d.reason and "best alternative 30.20 s" in d.reason


def test_no_migrate_when_an_alternative_is_cheaper() -> None:
    d = decide(_crowded(slow_load_s=3))
    assert (d.node, d.action) == ("slow", "COLD_START")


def test_no_migrate_when_the_running_work_has_nowhere_to_go() -> None:
    d = decide(_crowded(slow_load_s=30, elsewhere=False))
    assert (d.node, d.action) == ("slow", "COLD_START")


def test_migrate_is_the_last_resort_when_nothing_else_fits() -> None:
    fast = node("fast", ready("m2", 70, running=2), cat=catalog("m1", "m2", load_s=1))
    other = node("other", extra_used_gib=60, cat=catalog("m2", load_s=3))
    d = decide(view(fast, other))
    assert (d.node, d.action) == ("fast", "MIGRATE")
    assert "no other option" in d.reason


def test_migrate_picks_the_cheapest_set_of_instances() -> None:
    models = {**ready("m2", 40, running=5), **ready("m3", 20, running=1), **ready("m4", 20, running=1)}
    fast = node("fast", models, cat=catalog("m1", "m2", "m3", "m4", gib=30, load_s=1))
    spare = node("spare", {**ready("m2", 1), **ready("m3", 1), **ready("m4", 1)}, total_gib=80,
                 cat=catalog("m2", "m3", "m4", gib=1))
    d = decide(view(fast, spare))
    # Freeing 30 GiB: m3 + m4 (2 requests) is cheaper than m2 (5 requests).
    assert d.action == "MIGRATE" and sorted(d.evict) == ["m3", "m4"]


def test_room_moves_send_each_running_request_of_the_evicted_models_to_their_best_node() -> None:
    models = {**ready("m2", 40, running=5), **ready("m3", 20, running=1), **ready("m4", 20, running=2)}
    fast = node("fast", models, cat=catalog("m1", "m2", "m3", "m4", gib=30, load_s=1))
    spare = node("spare", {**ready("m3", 1)}, in_flight=1, total_gib=80, cat=catalog("m2", "m3", "m4", gib=1, load_s=4))
    idle = node("idle", {**ready("m3", 1)}, total_gib=80, cat=catalog("m3", "m4", gib=1, load_s=2))
    v = view(fast, spare, idle)
    d = decide(v)
    moves = room_moves(v, d)
    # m3 is ready on both others: the less loaded takes it; m4 is ready nowhere: the fastest loader.
    assert sorted((m.model, m.source, m.destination) for m in moves) == [
        ("m3", "fast", "idle"), ("m4", "fast", "idle"), ("m4", "fast", "idle")]
    assert room_moves(v, decide(view(node("a"), node("b", ready("m1"))))) == []  # no MIGRATE, no moves
