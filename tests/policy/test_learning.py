"""Learned affinity, the Holt forecaster and the pre-warm planner: the pure rules.

The daemons run these same functions (daemons/node/learning.py, daemons/coordinator/
prewarmer.py, gossip peers); tests/node/test_learning_cluster.py shows them on real nodes.
"""

from __future__ import annotations

import dataclasses
import math
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemons.core.errors import ConfigError
from daemons.policy import get_policy
from daemons.policy.estimates import Estimate, ewma, observe_load, observe_request, request_figures
from daemons.policy.forecast import Forecaster, ForecastSettings
from daemons.policy.learned import predicted_ttft
from daemons.policy.prewarm import plan, plan_for_peer, prewarm_settings, room_by_expected_use
from daemons.policy.view import COLD_START, SERVE, PlacementRequest
from tests.policy.helpers import GIB, catalog, node, ready, view


# ----- estimates ------------------------------------------------------------------------------
def test_first_observation_sets_the_average_then_it_moves_by_alpha() -> None:
    est = observe_request(Estimate(), 0.2, 0.01)
    assert (est.ttft_s, est.tpot_s, est.requests) == (0.2, 0.01, 1)
    est = observe_request(est, 0.4, None, alpha=0.5)
    assert est.ttft_s == pytest.approx(0.3) and est.tpot_s == 0.01 and est.tpots == 1
    assert observe_load(observe_load(Estimate(), 10.0), 20.0, 0.3).load_s == pytest.approx(13.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_nonsense_figures_leave_the_estimate_alone(bad: float) -> None:
    est = observe_request(Estimate(), 0.2, 0.01)
    assert observe_request(est, bad, 0.02) == est
    assert observe_load(est, bad) == est


@given(st.lists(st.floats(0, 100), min_size=1, max_size=50))
def test_an_ewma_stays_within_the_range_of_its_samples(samples: list[float]) -> None:
    avg = 0.0
    for i, x in enumerate(samples):
        avg = ewma(avg, x, i)
    assert min(samples) - 1e-9 <= avg <= max(samples) + 1e-9


def test_request_figures_take_the_wait_for_a_load_out_of_the_ttft() -> None:
    warm, tpot = request_figures({"load_wait_s": 5.0, "ttft_s": 5.25, "total_s": 6.25}, 11) or (0, 0)
    assert warm == pytest.approx(0.25) and tpot == pytest.approx(0.1)
    assert request_figures({}, 3) is None


# ----- learned affinity -----------------------------------------------------------------------
def _two_speeds(fast_ttft: float, slow_ttft: float, slow_queue: int = 0, fast_queue: int = 0):  # type: ignore[no-untyped-def]
    fast = dataclasses.replace(node("fast", ready("m1"), queue=fast_queue),
                               estimates={"m1": Estimate(fast_ttft, requests=5)})
    slow = dataclasses.replace(node("slow", ready("m1"), queue=slow_queue),
                               estimates={"m1": Estimate(slow_ttft, requests=5)})
    return view(fast, slow)


@pytest.mark.parametrize("name,mode", [("affinity-score", "centralized"), ("startup-optimal", "centralized"),
                                       ("power-of-d", "gossip"), ("local-first", "gossip"),
                                       ("sparrow", "gossip")])
def test_learned_affinity_sends_the_model_to_the_node_that_serves_it_faster(name: str, mode: str) -> None:
    v = _two_speeds(0.05, 0.5)
    policy = get_policy(name, mode, "learned")  # type: ignore[call-overload]
    for seed in range(20):
        args = (v, PlacementRequest("m1"), Random(seed)) + (("slow",) if mode == "gossip" else ())
        decision = policy(*args)
        assert decision.node == "fast" and decision.action == SERVE, decision
        assert "learned affinity" in decision.reason


def test_static_affinity_cannot_tell_the_two_apart() -> None:
    v = _two_speeds(0.05, 0.5)
    chosen = {get_policy("affinity-score")(v, PlacementRequest("m1"), Random(s)).node for s in range(40)}  # type: ignore[union-attr]
    assert chosen == {"fast", "slow"}


def test_a_queue_at_the_fast_node_makes_the_slow_one_worth_it() -> None:
    v = _two_speeds(0.05, 0.2, fast_queue=8)  # 9 prefills of 0.05 s > one of 0.2 s
    assert get_policy("affinity-score", "centralized", "learned")(v, PlacementRequest("m1"), Random(0)).node == "slow"  # type: ignore[union-attr]


def test_a_node_never_observed_gets_the_mean_of_the_others_not_zero() -> None:
    v = _two_speeds(0.1, 0.3)
    new = node("new", ready("m1"))
    from daemons.policy.capacity import holder_option
    assert predicted_ttft(holder_option(new, "m1"), PlacementRequest("m1"), prior=0.2) == pytest.approx(0.2)
    assert v.nodes["fast"].estimates["m1"].requests == 5


def test_a_cold_start_is_costed_with_the_nodes_own_load_time() -> None:
    slow_loader = dataclasses.replace(node("a"), estimates={"m1": Estimate(0.1, requests=1, load_s=30.0, loads=2)})
    quick_loader = dataclasses.replace(node("b"), estimates={"m1": Estimate(0.1, requests=1, load_s=3.0, loads=2)})
    d = get_policy("startup-optimal", "centralized", "learned")(view(slow_loader, quick_loader),
                                                                 PlacementRequest("m1"), Random(0))
    assert d.node == "b" and d.action == COLD_START  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["round-robin", "random", "least-loaded"])
def test_learned_with_a_policy_that_ranks_nothing_is_one_clear_error(policy: str) -> None:
    with pytest.raises(ConfigError, match=rf"policy '{policy}' cannot use --affinity learned.*--affinity static"):
        get_policy(policy, "centralized", "learned")


def test_an_unknown_affinity_is_refused() -> None:
    with pytest.raises(ConfigError, match="affinity 'fast' is unknown: use static"):
        get_policy("affinity-score", "centralized", "fast")


# ----- the forecaster ---------------------------------------------------------------------------
def _feed(f: Forecaster, model: str, per_bucket: list[int], start: float = 0.0) -> float:
    t = start
    for n in per_bucket:
        if n:
            f.observe(model, t + 0.5, n)
        t += 1.0
    return t


def test_holt_extrapolates_a_ramp_where_a_plain_ewma_lags() -> None:
    ramp = [1, 2, 3, 4, 5, 6]
    holt, ewma_only = Forecaster(ForecastSettings(0.5, 0.3)), Forecaster(ForecastSettings(0.5, 0.0))
    t = _feed(holt, "m", ramp)
    _feed(ewma_only, "m", ramp)
    assert holt.rate("m", t, horizon_s=5) > 6 > ewma_only.rate("m", t, horizon_s=5)


def test_a_silent_model_decays_to_zero_and_never_goes_negative() -> None:
    f = Forecaster()
    t = _feed(f, "m", [9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert f.rate("m", t) < 0.5
    assert f.rate("m", t + 100) >= 0.0 and f.rate("unknown", t) == 0.0


def test_a_model_in_use_whose_trend_dips_is_still_expected_at_its_level() -> None:
    f = Forecaster()
    t = _feed(f, "m", [8, 8, 8, 2, 2])  # a burst, then a drop: the trend extrapolates to 0
    assert f.rate("m", t) == 0.0 and f.expected("m", t) > 1.0 and f.uses(t)["m"] == f.expected("m", t)


def test_a_model_forecast_below_the_floor_is_not_prewarmed_even_with_no_holder() -> None:
    v = view(node("a"), node("b"))
    assert plan(v, {"m1": 0.3}, instance_rps=2.0) == []
    assert [o.model for o in plan(v, {"m1": 0.6}, instance_rps=2.0)] == ["m1"]


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_forecasts_are_finite_and_never_negative(counts: list[int]) -> None:
    f = Forecaster()
    t = _feed(f, "m", counts)
    assert all(math.isfinite(r) and r >= 0 for r in (f.rate("m", t), f.rate("m", t, 0.0), f.rate("m", t, 60)))


@pytest.mark.parametrize("key,value,message", [
    ("alpha", 0.0, r"forecast_alpha 0\.0 is out of range: use 0 < forecast_alpha <= 1"),
    ("alpha", 1.5, r"forecast_alpha 1\.5 is out of range"),
    ("beta", -0.1, r"forecast_beta -0\.1 is out of range: use 0 <= forecast_beta <= 1"),
    ("horizon_s", 0.0, r"forecast_horizon_s 0\.0 is out of range"),
    ("horizon_s", math.nan, r"forecast_horizon_s nan is out of range"),
])
def test_a_forecaster_setting_out_of_range_is_one_clear_error(key: str, value: float, message: str) -> None:
    args = {"alpha": 0.5, "beta": 0.3, "horizon_s": 5.0} | {key: value}
    with pytest.raises(ConfigError, match=message):
        prewarm_settings("on", args["alpha"], args["beta"], args["horizon_s"], 2.0, "[coordinator] ")


def test_prewarm_must_be_on_or_off() -> None:
    with pytest.raises(ConfigError, match="prewarm 'yes' is unknown: use off or on"):
        prewarm_settings("yes", 0.5, 0.3, 5.0, 2.0)
    with pytest.raises(ConfigError, match="prewarm_instance_rps 0 is out of range"):
        prewarm_settings("on", 0.5, 0.3, 5.0, 0)


# ----- the pre-warm planner ---------------------------------------------------------------------
def test_a_model_forecast_above_its_holders_capacity_is_loaded_on_an_idle_node() -> None:
    v = view(node("a", ready("m1")), node("b", queue=3), node("c"))
    orders = plan(v, {"m1": 5.0}, instance_rps=2.0)
    assert [(o.node, o.model, o.evict) for o in orders] == [("c", "m1", ())]  # b is busy
    assert orders[0].capacity_rps == 2.0 and orders[0].footprint_bytes == 16 * GIB
    assert plan(v, {"m1": 1.5}, instance_rps=2.0) == []  # its holder absorbs it
    assert plan(v, {"m1": 5.0}, 2.0, skip=[("c", "m1")]) == []  # ordered already


def test_victims_go_by_least_expected_use_not_lru() -> None:
    full = node("a", {**ready("m2", 40, last_used=1.0), **ready("m3", 40, last_used=9.0)},
                cat=catalog("m1", "m2", "m3", gib=40))
    rates = {"m1": 4.0, "m2": 3.0, "m3": 0.1}
    assert room_by_expected_use(full, 40 * GIB, rates) == ("m3",)  # LRU would evict m2
    assert room_by_expected_use(full, 40 * GIB, rates, below=0.05) is None  # nothing that little used
    other = node("b", {**ready("m2", 40), **ready("m3", 40)}, queue=3, cat=catalog("m1", "m2", "m3", gib=40))
    (order,) = plan(view(full, other), rates, instance_rps=1.0)  # b holds copies of m2, m3 (and is busy)
    assert (order.node, order.model, order.evict) == ("a", "m1", ("m3",))


def test_a_prewarm_never_takes_the_last_copy_of_a_model_in_use() -> None:
    full = node("a", {**ready("m2", 40), **ready("m3", 40)}, cat=catalog("m1", "m2", "m3", gib=40))
    v = view(full)  # a holds the only copies of m2 and m3, both in use
    assert plan(v, {"m1": 4.0, "m2": 1.0, "m3": 0.6}, instance_rps=1.0) == []
    assert plan(v, {"m1": 4.0, "m2": 1.0, "m3": 0.1}, instance_rps=1.0)[0].evict == ("m3",)  # m3 is unused


def test_a_peer_scales_its_local_rate_and_keeps_only_its_own_orders() -> None:
    v = view(node("a", ready("m1")), node("b"), node("c"))
    assert [o.node for o in plan_for_peer(v, "b", {"m1": 1.0}, 2.0)] == ["b"]  # 1 req/s here ~ 3 in all
    assert plan_for_peer(v, "c", {"m1": 1.0}, 2.0) == []  # b is the target: c does not load it too
    assert plan_for_peer(v, "b", {"m1": 0.5}, 2.0) == []
