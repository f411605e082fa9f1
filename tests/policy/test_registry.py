"""The one policy registry: lookup per mode, and the one error for a name a mode cannot run."""

from __future__ import annotations

from random import Random

import pytest

from daemons.coordinator.config import CoordinatorConfig
from daemons.core.errors import ConfigError
from daemons.node.config import NodeConfig
from daemons.policy import (
    DEFAULT_GOSSIP_POLICY,
    DEFAULT_POLICY,
    MODES,
    POLICIES,
    Decision,
    PlacementRequest,
    PolicyEntry,
    get_policy,
    names,
)
from daemons.policy.baseline import round_robin
from daemons.policy.peer import power_of_d
from tests.policy.helpers import node, ready, view

CENTRALIZED = ["affinity-score", "least-loaded", "random", "round-robin", "startup-optimal"]
GOSSIP = ["local-first", "power-of-d", "sparrow"]


def test_each_mode_lists_the_policies_that_serve_it() -> None:
    assert names("centralized") == CENTRALIZED
    assert names("gossip") == GOSSIP
    assert sorted(POLICIES) == sorted(CENTRALIZED + GOSSIP)  # every entry serves a mode
    assert all(POLICIES[n].modes == ("centralized",) for n in CENTRALIZED)
    assert all(POLICIES[n].modes == ("gossip",) for n in GOSSIP)


def test_defaults_serve_their_mode() -> None:
    assert POLICIES[DEFAULT_POLICY].serves("centralized")
    assert POLICIES[DEFAULT_GOSSIP_POLICY].serves("gossip")


@pytest.mark.parametrize("name", CENTRALIZED)
def test_centralized_lookup_places_from_the_whole_view(name: str) -> None:
    decision = get_policy(name, "centralized")(view(node("a", ready("m1"))), PlacementRequest("m1"), Random(0))
    assert isinstance(decision, Decision) and decision.node == "a"
    assert get_policy(name) is get_policy(name, "centralized")  # the coordinator's mode is the default


@pytest.mark.parametrize("name", GOSSIP)
def test_gossip_lookup_places_as_a_named_peer(name: str) -> None:
    v = view(node("a", ready("m1")), node("b"))
    decision = get_policy(name, "gossip")(v, PlacementRequest("m1"), Random(0), "b")
    assert isinstance(decision, Decision) and decision.node == "a"


@pytest.mark.parametrize(("mode", "known"), [("centralized", CENTRALIZED), ("gossip", GOSSIP)])
def test_an_unknown_name_names_the_policies_of_its_mode(mode: str, known: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        get_policy("fastest", mode)  # type: ignore[call-overload]
    who = "the centralized coordinator" if mode == "centralized" else "gossip peers"
    assert str(err.value) == f"unknown policy 'fastest' for {who}: choose one of {', '.join(known)}"


def test_a_policy_of_the_other_mode_is_refused_naming_the_right_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_policy("local-first", "centralized")
    assert str(err.value) == ("policy 'local-first' serves gossip peers, not the centralized coordinator: "
                              f"choose one of {', '.join(CENTRALIZED)}")
    with pytest.raises(ConfigError) as err:
        get_policy("affinity-score", "gossip")
    assert str(err.value) == ("policy 'affinity-score' serves the centralized coordinator, not gossip peers: "
                              f"choose one of {', '.join(GOSSIP)}")


def test_an_entry_may_serve_several_modes() -> None:
    both = PolicyEntry(centralized=round_robin, gossip=power_of_d)
    assert both.modes == MODES and both.run_as("gossip") is power_of_d and both.run_as("centralized") is round_robin
    assert PolicyEntry(gossip=power_of_d).modes == ("gossip",) and not PolicyEntry().modes


def test_an_entry_holds_a_callable_object() -> None:
    """A policy with state or extra steps (Sparrow's probes) is an object the mode can call."""

    class Probing:
        def __call__(self, v: object, request: PlacementRequest, rng: Random, me: str) -> Decision:
            raise AssertionError("not called here")

    policy = Probing()
    assert PolicyEntry(gossip=policy).run_as("gossip") is policy


def test_configs_check_their_policy_against_their_mode() -> None:
    with pytest.raises(ConfigError, match="'sparrow' serves gossip peers, not the centralized coordinator"):
        CoordinatorConfig.load(None, {"policy": "sparrow"})
    with pytest.raises(ConfigError, match="'startup-optimal' serves the centralized coordinator, not gossip peers"):
        NodeConfig(scheduler="gossip", gossip_policy="startup-optimal")
    assert NodeConfig(gossip_policy="local-first").gossip_policy == "local-first"


def test_the_experiment_spec_checks_both_policies() -> None:
    from cli.experiment.spec import ExperimentSpec

    with pytest.raises(ConfigError, match="unknown policy 'teleport' for gossip peers"):
        ExperimentSpec(gossip_policy="teleport")
    with pytest.raises(ConfigError, match="'power-of-d' serves gossip peers, not the centralized coordinator"):
        ExperimentSpec(policy="power-of-d")
