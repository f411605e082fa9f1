"""The hybrid split's pure rules (daemons/policy/hybrid.py), the peer's degraded-mode state
machine (daemons/node/hybrid_mode.py Standing), the coordinator's map publisher
(daemons/coordinator/referrals.py) and the arm lists of an experiment spec."""

from __future__ import annotations

from random import Random

import pytest

from cli.experiment.spec import ExperimentSpec, parse_schedulers
from daemons.bus import parse_frame
from daemons.coordinator.referrals import MIN_GAP_S, MapPublisher
from daemons.core.errors import ConfigError
from daemons.core.messages import ModelMap
from daemons.node.config import NodeConfig
from daemons.node.hybrid_mode import Standing
from daemons.policy import Decision, Refusal, get_policy
from daemons.policy.hybrid import by_node, expected, model_map, peer_decides
from daemons.policy.view import COLD_START, MIGRATE, SERVE, PlacementRequest
from tests.policy.helpers import node, ready, view


def test_a_warm_choice_is_the_peers_and_a_cold_one_is_referred() -> None:
    cluster = view(node("n0", ready("m1")), node("n1", ready("m2", state="loading")), node("n2"))
    policy = get_policy("power-of-d", "gossip")
    warm = policy(cluster, PlacementRequest("m1"), Random(1), "n2")
    assert isinstance(warm, Decision) and warm.node == "n0" and peer_decides(cluster, warm, "m1")
    loading = policy(cluster, PlacementRequest("m2"), Random(1), "n2")  # a load started there: no new one
    assert isinstance(loading, Decision) and loading.action == COLD_START and peer_decides(cluster, loading, "m2")
    cold = policy(cluster, PlacementRequest("m3"), Random(1), "n2")
    assert isinstance(cold, Decision) and cold.action == COLD_START and not peer_decides(cluster, cold, "m3")


def test_evictions_migrations_refusals_and_dead_holders_are_referred() -> None:
    cluster = view(node("n0", ready("m1")), node("n1", ready("m2"), alive=False))
    assert not peer_decides(cluster, Decision("n0", "e", SERVE, 0.0, "", evict=("m9",)), "m1")
    assert not peer_decides(cluster, Decision("n0", "e", MIGRATE, 0.0, ""), "m1")
    assert not peer_decides(cluster, Refusal("no_nodes", "full"), "m1")
    assert not peer_decides(cluster, Decision("n1", "e", SERVE, 0.0, ""), "m2")
    assert not peer_decides(cluster, Decision("n9", "e", SERVE, 0.0, ""), "m1")  # not in our view


def test_the_map_lists_alive_holders_and_adds_what_older_gossip_does_not_show() -> None:
    cluster = view(node("n0", ready("m1")), node("n1", ready("m1")), node("n2", ready("m2"), alive=False))
    assert model_map(cluster) == {"m1": ["n0", "n1"]}
    assert by_node({"m1": ["n0", "n1"], "m2": ["n1"]}) == {"n0": ("m1",), "n1": ("m1", "m2")}
    assert expected(("m1", "m2"), ["m1"], map_age_s=0.2, record_age_s=0.9) == ["m2"]  # gossip lags the map
    assert expected(("m1", "m2"), ["m1"], map_age_s=0.9, record_age_s=0.2) == []  # gossip is fresher: it knows
    assert expected(("m1",), [], map_age_s=0.2, record_age_s=None) == []


def test_standing_degrades_once_and_recovers_on_the_next_word() -> None:
    standing = Standing(timeout_s=2.0, last_heard=0.0)
    assert standing.check(1.9) is None and not standing.degraded
    assert standing.check(2.5) is not None and standing.degraded
    assert standing.check(3.0) is None  # one event per spell
    assert standing.silent(3.5, "referral unanswered") is None
    back = standing.heard(5.0)
    assert back is not None and "2.5 s" in back and not standing.degraded
    assert standing.heard(5.5) is None
    assert standing.silent(6.0, "cannot reach it") == "cannot reach it" and standing.degraded


def test_the_map_is_due_periodically_and_soon_after_a_load_but_never_when_off() -> None:
    off = MapPublisher("c", 0.0)
    off.placed(COLD_START)
    assert not off.due(100.0)
    maps = MapPublisher("c", 1.0)
    assert maps.due(0.0)
    env = parse_frame(maps.frame(view(node("n0", ready("m1"))), 3, 0.0), "test")
    assert env is not None and isinstance(env.body, ModelMap)
    assert (env.body.epoch, env.body.seq, env.body.models) == (3, 1, {"m1": ["n0"]})
    assert not maps.due(0.5)
    maps.placed(SERVE)  # a warm placement changes no holder
    assert not maps.due(0.5)
    maps.placed(COLD_START)
    assert not maps.due(MIN_GAP_S / 2) and maps.due(0.5)
    maps.frame(view(), 3, 0.5)
    assert not maps.due(1.0) and maps.due(1.5)


def test_arm_lists() -> None:
    assert parse_schedulers("both") == ("centralized", "gossip")
    assert parse_schedulers("all") == ("centralized", "gossip", "hybrid")
    assert parse_schedulers("centralized, hybrid") == ("centralized", "hybrid")
    assert parse_schedulers(["hybrid"]) == ("hybrid",)
    assert ExperimentSpec(schedulers=parse_schedulers("gossip,hybrid")).schedulers == ("gossip", "hybrid")
    assert ExperimentSpec().schedulers == ("centralized", "gossip")  # the default stays the prototype's two


@pytest.mark.parametrize(("value", "says"), [
    ("centralized,hybird", "'hybird' unknown; use centralized, gossip, hybrid, a comma-separated list"),
    ("hybrid,hybrid", "names an arm twice"),
    ("", "'' unknown"),
])
def test_a_bad_arm_list_is_one_clear_error(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        ExperimentSpec(schedulers=parse_schedulers(value))


def test_a_hybrid_node_without_its_coordinator_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match=r"set coordinator .* and coordinator_events"):
        NodeConfig(scheduler="hybrid")
    with pytest.raises(ConfigError, match="centralized, gossip or hybrid"):
        NodeConfig(scheduler="hybird")
    assert NodeConfig(scheduler="hybrid", coordinator="tcp://127.0.0.1:1", coordinator_events="tcp://127.0.0.1:2")


def test_a_study_takes_hybrid_as_a_third_arm() -> None:
    from cli.study.spec import from_dict as study_from_dict

    arms = [{"name": n, "scheduler": n} for n in ("centralized", "gossip", "hybrid")]
    study = study_from_dict({"study": {"name": "three"}, "base": {"duration_s": 5, "nodes": 3}, "arms": arms},
                            "test")
    assert [study.experiment(a, p, 1).schedulers for a in study.arms for p in study.points()] == [
        ("centralized",), ("gossip",), ("hybrid",)]
    with pytest.raises(ConfigError, match="an arm is one scheduler"):
        study_from_dict({"study": {"name": "x"}, "arms": [{"name": "a", "scheduler": "gossip,hybrid"}]}, "test")


def test_a_retry_is_referred_even_to_a_warm_holder() -> None:
    # Once a node failed to take the request, the peer's view has proven stale for it: the
    # coordinator decides the retry (excluding the nodes tried), even where a holder is left.
    cluster = view(node("n0", ready("m1")), node("n1", ready("m1")), node("n2"))
    policy = get_policy("power-of-d", "gossip")
    retry = policy(cluster, PlacementRequest("m1", exclude=frozenset({"n1"})), Random(1), "n2")
    assert isinstance(retry, Decision) and retry.node == "n0" and retry.action == SERVE
    assert peer_decides(cluster, retry, "m1") and not peer_decides(cluster, retry, "m1", {"n1"})
