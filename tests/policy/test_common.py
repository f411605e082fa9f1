"""Rules every policy follows: refusals, exclusions, liveness, capacity."""

from __future__ import annotations

from random import Random

import pytest

from daemons.core.errors import ConfigError
from daemons.policy import Decision, PlacementRequest, Refusal, get_policy, names
from tests.policy.helpers import catalog, node, ready, view

ALL = names("centralized")


def place(name: str, *nodes_: object, model: str = "m1", exclude: frozenset[str] = frozenset(),
          seed: int = 0) -> Decision | Refusal:
    return get_policy(name)(view(*nodes_), PlacementRequest(model, 100, 50, 0, exclude),  # type: ignore[arg-type]
                            Random(seed))


def test_get_policy_names_the_known_policies() -> None:
    with pytest.raises(ConfigError, match="affinity-score, least-loaded, random, round-robin, startup-optimal"):
        get_policy("fastest")


@pytest.mark.parametrize("policy", ALL)
def test_unknown_model_is_refused_with_its_name(policy: str) -> None:
    result = place(policy, node("a", ready("m1")), model="gpt-5")
    assert isinstance(result, Refusal) and result.code == "unknown_model"
    assert "'gpt-5'" in result.message and "m1" in result.message


@pytest.mark.parametrize("policy", ALL)
def test_no_live_node_is_no_nodes(policy: str) -> None:
    result = place(policy, node("a", ready("m1"), alive=False))
    assert isinstance(result, Refusal) and result.code == "no_nodes"
    assert "all dead" in result.message


@pytest.mark.parametrize("policy", ALL)
def test_a_model_too_big_for_every_node_is_no_nodes(policy: str) -> None:
    big = catalog("m1", gib=100)
    result = place(policy, node("a", cat=big), node("b", cat=big))
    assert isinstance(result, Refusal) and result.code == "no_nodes"
    assert "100.0 GiB" in result.message


@pytest.mark.parametrize("policy", ALL)
def test_exclude_is_honoured(policy: str) -> None:
    for seed in range(20):
        result = place(policy, node("a", ready("m1")), node("b"), exclude=frozenset({"a"}), seed=seed)
        assert isinstance(result, Decision) and result.node == "b"
        assert result.action == "COLD_START"


@pytest.mark.parametrize("policy", ALL)
def test_excluding_every_node_is_no_nodes_naming_the_exclusions(policy: str) -> None:
    result = place(policy, node("a", ready("m1")), exclude=frozenset({"a"}))
    assert isinstance(result, Refusal) and result.code == "no_nodes" and "1 excluded" in result.message


@pytest.mark.parametrize("policy", ALL)
def test_dead_nodes_are_never_chosen(policy: str) -> None:
    for seed in range(20):
        result = place(policy, node("a", ready("m1"), alive=False), node("b"), seed=seed)
        assert isinstance(result, Decision) and result.node == "b"


@pytest.mark.parametrize("policy", ALL)
def test_cold_start_only_where_the_model_fits(policy: str) -> None:
    # "a" is full of a busy model; "b" has room once its idle model goes.
    a = node("a", ready("m2", 70, running=3))
    b = node("b", ready("m3", 70, last_used=5.0))
    for seed in range(20):
        result = place(policy, a, b, seed=seed)
        assert isinstance(result, Decision) and result.node == "b"
        assert (result.action, result.evict) == ("COLD_START", ("m3",))


@pytest.mark.parametrize("policy", ALL)
def test_idle_evictions_go_least_recently_used_first(policy: str) -> None:
    n = node("a", {**ready("m2", 30, last_used=9.0), **ready("m3", 30, last_used=1.0)},
             cat=catalog("m1", "m2", "m3", gib=30))
    result = place(policy, n)
    assert isinstance(result, Decision) and result.evict == ("m3",)


@pytest.mark.parametrize("policy", ALL)
def test_a_node_where_the_model_just_failed_is_not_retried(policy: str) -> None:
    result = place(policy, node("a", ready("m1", state="failed")), node("b"))
    assert isinstance(result, Decision) and result.node == "b"


@pytest.mark.parametrize("policy", ALL)
def test_same_seed_same_decision(policy: str) -> None:
    nodes_ = [node(f"n{i}", ready("m1")) for i in range(8)]
    assert place(policy, *nodes_, seed=3) == place(policy, *nodes_, seed=3)
